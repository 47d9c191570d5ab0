"""What the node knows of its peers, and the rules that follow from it: offences and bans,
trust, penalised addresses, whom to redial, and which connections to trim.

Pure bookkeeping on peer ids as strings and an injectable clock; ``p2p.host`` feeds it from
libp2p's events and asks it before dialling, validating and answering. Rules:

* An **offence** is a rejected gossip message, a refused sync request, or a stream whose bytes
  raised. ``offence_limit`` offences within ``offence_window`` seconds ban the peer for
  ``ban_seconds``: it is disconnected, refused and never dialled meanwhile.
* Offences also count against the peer's **IP address**: once peers on one address have
  committed ``ip_offence_limit`` offences within the window, the address is **penalised** and
  every peer on it that is not trusted is refused at the cheapest point (its gossip dropped
  before decoding, its sync requests refused, no offence) and new connections from it are
  throttled at accept (``p2p.admission``). A fresh peer id costs an attacker nothing; an address
  does. Trusted peers on the address are not affected, and untrusted ones that get in still
  receive gossip (a NAT may hide honest peers behind a Sybil's address); what they send is read
  again once the address's offences have aged out of the window (refusals are no offences, so
  they are not banned for it).
* A peer is **trusted** when it is protected (a bootstrap peer, one the operator connected) or
  **useful**: it delivered a fact this node accepted within ``useful_seconds``.
* Only trusted peers are (re)dialled, and not while banned: after a failed dial the next waits
  ``redial_min`` seconds, doubling to ``redial_max``; a useful peer is given up after
  ``redial_attempts`` failures in a row (protected peers never are).
* **Trimming** (``choose_trim``): above ``high`` connections, connections are closed down to
  ``low``; protected and useful peers and connections younger than ``grace`` seconds are
  kept; offenders go first, then peers that never delivered, least recently useful first,
  newest first among equals (long-standing peers are worth more).
* The table is bounded: beyond ``max_records`` peers, the records of peers that are neither
  connected, protected, useful nor banned are dropped, least recently seen first.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    offence_limit: int = 5
    offence_window: float = 60.0
    ban_seconds: float = 600.0
    ip_offence_limit: int = 50
    useful_seconds: float = 3600.0
    max_records: int = 4096
    redial_min: float = 1.0
    redial_max: float = 60.0
    redial_attempts: int = 8


@dataclass(slots=True)
class PeerRecord:
    #: Wall-clock time of the current connection (None when not connected).
    connected_since: float | None = None
    ip: str | None = None
    facts_received: int = 0
    rejected: int = 0
    offences: deque[float] = field(default_factory=deque)
    banned_until: float = 0.0
    last_useful: float | None = None
    last_seen: float = 0.0
    next_dial: float = 0.0
    dial_delay: float = 0.0
    dial_failures: int = 0


class PeerBook:
    def __init__(
        self,
        policy: PeerPolicy = PeerPolicy(),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._wall = wall
        self._records: dict[str, PeerRecord] = {}
        self._protected: set[str] = set()
        self._ip_offences: dict[str, deque[float]] = {}

    def __iter__(self) -> Iterator[tuple[str, PeerRecord]]:
        return iter(sorted(self._records.items()))

    def __len__(self) -> int:
        return len(self._records)

    def get(self, peer: str) -> PeerRecord:
        record = self._records.get(peer)
        if record is None:
            record = self._records[peer] = PeerRecord(last_seen=self._clock())
            if len(self._records) > self.policy.max_records:
                self._prune()
        return record

    # -- events ----------------------------------------------------------------------------

    def connected(self, peer: str, ip: str | None) -> None:
        record = self.get(peer)
        record.connected_since = self._wall()
        record.ip = ip or record.ip
        record.last_seen = self._clock()
        record.dial_delay = 0.0
        record.dial_failures = 0
        record.next_dial = 0.0

    def disconnected(self, peer: str) -> None:
        record = self.get(peer)
        record.connected_since = None
        record.last_seen = self._clock()

    def all_disconnected(self) -> None:
        for record in self._records.values():
            record.connected_since = None

    def delivered(self, peer: str, facts: int) -> None:
        """``peer`` delivered ``facts`` facts that the node accepted."""
        record = self.get(peer)
        record.facts_received += facts
        if facts:
            record.last_useful = self._clock()

    def offence(self, peer: str) -> bool:
        """Count an offence against the peer and its address; True when it bans the peer now."""
        now = self._clock()
        record = self.get(peer)
        record.rejected += 1
        window = self.policy.offence_window
        record.offences.append(now)
        _age(record.offences, now, window)
        if record.ip is not None:
            times = self._ip_offences.setdefault(record.ip, deque())
            times.append(now)
            _age(times, now, window)
        if len(record.offences) >= self.policy.offence_limit and not self.is_banned(peer):
            record.banned_until = now + self.policy.ban_seconds
            return True
        return False

    def ban(self, peer: str, seconds: float) -> None:
        self.get(peer).banned_until = self._clock() + seconds
        self._protected.discard(peer)

    def unban(self, peer: str) -> None:
        record = self._records.get(peer)
        if record is not None:
            record.banned_until = 0.0
            record.offences.clear()

    def protect(self, peer: str) -> None:
        """A bootstrap peer or one the operator connected: trusted, never trimmed."""
        self._protected.add(peer)
        self.get(peer)

    # -- questions -------------------------------------------------------------------------

    def is_banned(self, peer: str) -> bool:
        record = self._records.get(peer)
        return record is not None and record.banned_until > self._clock()

    def is_useful(self, peer: str) -> bool:
        record = self._records.get(peer)
        return (
            record is not None
            and record.last_useful is not None
            and self._clock() - record.last_useful <= self.policy.useful_seconds
        )

    def is_trusted(self, peer: str) -> bool:
        return peer in self._protected or self.is_useful(peer)

    def ip_penalised(self, ip: str | None) -> bool:
        offences = self._ip_offences.get(ip) if ip is not None else None
        if not offences:
            return False
        _age(offences, self._clock(), self.policy.offence_window)
        return len(offences) >= self.policy.ip_offence_limit

    def refuses(self, peer: str) -> bool:
        """Whether what ``peer`` sends is refused unread: it is banned, or it is not trusted
        and its address is penalised."""
        if self.is_banned(peer):
            return True
        record = self._records.get(peer)
        return record is not None and self.ip_penalised(record.ip) and not self.is_trusted(peer)

    def recent_offences(self, peer: str) -> int:
        record = self._records.get(peer)
        if record is None:
            return 0
        _age(record.offences, self._clock(), self.policy.offence_window)
        return len(record.offences)

    # -- dialling ----------------------------------------------------------------------------

    def may_dial(self, peer: str) -> bool:
        """Whether this node may dial ``peer`` now (trusted, not banned, backoff elapsed)."""
        if self.is_banned(peer) or not self.is_trusted(peer):
            return False
        record = self.get(peer)
        if peer not in self._protected and record.dial_failures >= self.policy.redial_attempts:
            return False
        return self._clock() >= record.next_dial

    def dialled(self, peer: str, ok: bool) -> None:
        record = self.get(peer)
        if ok:
            record.dial_delay = 0.0
            record.dial_failures = 0
            record.next_dial = 0.0
            return
        record.dial_failures += 1
        record.dial_delay = min(
            max(record.dial_delay * 2, self.policy.redial_min), self.policy.redial_max
        )
        record.next_dial = self._clock() + record.dial_delay

    def retry_in(self, peer: str) -> float:
        """Seconds until ``peer`` may be dialled again (0 when it may be now)."""
        return max(0.0, self.get(peer).next_dial - self._clock())

    # -- trimming ----------------------------------------------------------------------------

    def choose_trim(self, connected: Sequence[str], low: int, high: int, grace: float) -> list[str]:
        """The peers whose connections to close now (see the module docstring)."""
        if len(connected) <= high:
            return []
        wall = self._wall()
        candidates = []
        for peer in connected:
            record = self.get(peer)
            since = record.connected_since
            if self.is_trusted(peer) or (since is not None and wall - since < grace):
                continue
            candidates.append(
                (
                    -self.recent_offences(peer),
                    record.last_useful is not None,
                    record.last_useful or 0.0,
                    -(since or wall),
                    peer,
                )
            )
        candidates.sort()
        return [entry[-1] for entry in candidates[: len(connected) - low]]

    def _prune(self) -> None:
        now = self._clock()
        idle = [
            (record.last_seen, peer)
            for peer, record in self._records.items()
            if record.connected_since is None
            and peer not in self._protected
            and record.banned_until <= now
            and not self.is_useful(peer)
        ]
        idle.sort()
        for _, peer in idle[: len(self._records) - self.policy.max_records]:
            del self._records[peer]
        for times in self._ip_offences.values():  # aged first: stale addresses go too
            _age(times, now, self.policy.offence_window)
        for ip in [ip for ip, times in self._ip_offences.items() if not times]:
            del self._ip_offences[ip]


def _age(times: deque[float], now: float, window: float) -> None:
    """Drop from ``times`` (oldest first) what is older than ``window`` seconds at ``now``."""
    while times and now - times[0] > window:
        times.popleft()
