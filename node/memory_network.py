"""``MemoryNetwork``: the ``node.ports.Network`` fake, in one process and one event loop.

Nodes built on it talk through a ``MemoryHub`` instead of libp2p. It keeps the contract the
real adapter (``p2p.host.Libp2pNetwork``) keeps, and ``tests/congruence/test_network.py`` holds
the two to the same answers:

- ``publish`` never blocks or fails; records go out grouped by replication set
  (``node.collections.set_of``, one gossip topic each in ``p2p.topics``), and every connected
  peer that subscribes to the set (it holds it: ``*`` holds all) gets them as gossip (origin
  ``GOSSIP``), each one checked on the way in as bytes from elsewhere (``node.kinds``) and
  against the set (``outside_set``), then judged by the receiving node
  (``RecordSink.judge``); an accepted message is forwarded to the receiver's other
  subscribed peers once (as gossipsub relays what its validator accepts), a rejected one is
  neither delivered nor forwarded and counts as an offence of the sender;
- ``connect`` dials a peer (its address is ``/memory/<peer id>``) and both sides catch up by
  pulling what they lack of the sets they hold (origin ``SYNC``), as the real catch-up sync
  does on connect;
- ``fetch_records`` and ``fetch_blocks`` ask connected peers; what comes back is verified;
- ``directory`` lists the adverts of peers reachable through connected ones: each node
  advertises (model, ``*``, per set its count and a digest: its own, a SHA-256 of the sorted
  CIDs, equal sets equal digests) at start, on connect and whenever its set changed after a
  publish or a delivery; adverts travel like gossip.

Invariant: nothing unverified reaches a sink. Not modelled: transport, scoring and bans,
admission limits, loss and reordering, directory expiry and the real digest (what ``p2p``
tests with real hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.cid import cid_to_bytes, verify_block
from node.collections import BASE_SET, RECORDS_SET, outside_set, set_of, topic_set
from node.errors import InvalidInput, KnowhubError, PeerRefused, PeerUnavailable, Unavailable
from node.federation import refusal_code
from node.kinds import verify_record
from node.origin import Origin
from node.ports import (
    AnchorEvent,
    CollectionAdvert,
    DirectoryEntry,
    NetworkStatus,
    PeerAnswer,
    PeerRequest,
    PeerStatus,
    RecordSink,
)
from node.records import SignedRecord

log = logging.getLogger(__name__)

ADDRESS_PREFIX = "/memory/"


@dataclass
class MemoryHub:
    """The medium: every ``MemoryNetwork`` started on it, by peer id."""

    members: dict[str, MemoryNetwork] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def new_id(self) -> str:
        return f"memory-peer-{next(self._ids)}"


class MemoryNetwork:
    def __init__(self, hub: MemoryHub, bootstrap: Sequence[str] = ()) -> None:
        self._hub = hub
        self._bootstrap = list(bootstrap)
        self.peer_id = hub.new_id()
        self._sink: RecordSink | None = None
        self._peers: dict[str, float] = {}  # connected peer id -> since (loop time)
        self._received: dict[str, int] = {}
        self._rejected: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: set[bytes] = set()  # message ids already handled (gossip forwards once)
        self._adverts: dict[str, DirectoryEntry] = {}  # by advertising peer
        self._advert_seqs: dict[str, int] = {}  # the latest advert's number, by peer
        self._advert_seq = 0
        self._advertised: int | None = None  # set version last advertised
        self.published = 0
        self.accepted = 0
        self.syncs = 0
        self.anchor_notices = 0

    @property
    def address(self) -> str:
        return ADDRESS_PREFIX + self.peer_id

    # -- node.ports.Network -------------------------------------------------------------------

    async def start(self, sink: RecordSink) -> None:
        self._sink = sink
        self._hub.members[self.peer_id] = self
        for address in self._bootstrap:
            with contextlib.suppress(KnowhubError):  # a bootstrap peer may start later
                await self.connect(address)
        self._advertise()

    def publish(self, records: Sequence[SignedRecord]) -> None:
        if not records:
            return
        self.published += len(records)
        by_set: dict[str, list[SignedRecord]] = {}  # by topic
        for record in records:
            by_set.setdefault(topic_set(set_of(record)), []).append(record)
        for name, group in by_set.items():
            wire = [(r.block, r.signature_bytes) for r in group]
            self._seen.add(_message_id(wire, self.peer_id))
            self._forward(name, wire, self.peer_id, except_peer=None)
        self._advertise_if_changed()

    def _forward(
        self, name: str, wire: list[tuple[bytes, bytes]], origin: str, except_peer: str | None
    ) -> None:
        for other in self._connected():
            if other.peer_id != except_peer and other._subscribes(name):
                self._spawn(other._gossip(name, wire, origin, self.peer_id))

    def _subscribes(self, topic: str) -> bool:
        """Whether this node subscribes to the gossip topic of set ``topic``."""
        return self._sink is not None and (topic == BASE_SET or self._sink.held().holds(topic))

    def announce_anchor(self, chain_id: int, registry: str, event: AnchorEvent) -> None:
        for peer in list(self._peers):
            other = self._hub.members.get(peer)
            if other is not None and other._sink is not None:
                other.anchor_notices += 1
                self._spawn(other._sink.anchor_announced(chain_id, registry))

    def peers(self) -> list[PeerStatus]:
        known = set(self._peers) | set(self._received) | set(self._rejected)
        return [
            PeerStatus(
                peer_id=peer,
                addresses=[ADDRESS_PREFIX + peer],
                connected_since=self._peers.get(peer),
                facts_received=self._received.get(peer, 0),
                rejected_messages=self._rejected.get(peer, 0),
                recent_offences=self._rejected.get(peer, 0),
            )
            for peer in sorted(known)
        ]

    def directory(self) -> list[DirectoryEntry]:
        entries = sorted(self._adverts.values(), key=lambda e: -e.seen_at)
        return [dataclasses.replace(e, connected=e.peer_id in self._peers) for e in entries]

    def status(self) -> NetworkStatus:
        assert self._sink is not None
        cids = self._sink.record_cids()
        return NetworkStatus(
            peer_id=self.peer_id,
            listen_addresses=[self.address],
            connected_peers=len(self._peers),
            facts_published=self.published,
            facts_received=sum(self._received.values()),
            messages_rejected=sum(self._rejected.values()),
            messages_accepted=self.accepted,
            syncs=self.syncs,
            last_sync_error=None,
            fact_set_digest=hashlib.sha256(b"".join(sorted(cids))).hexdigest(),
            signed_facts=len(cids),
            anchor_notices=self.anchor_notices,
            bootstrap_peers=len(self._bootstrap),
        )

    async def connect(self, address: str) -> str:
        if not address.startswith(ADDRESS_PREFIX):
            raise InvalidInput(f"not a memory address: {address}", field="address")
        peer = address.removeprefix(ADDRESS_PREFIX)
        other = self._hub.members.get(peer)
        if other is None or other is self:
            raise Unavailable(f"cannot connect to {address}: no such peer")
        loop_time = asyncio.get_running_loop().time()
        self._peers[peer] = loop_time
        other._peers[self.peer_id] = loop_time
        await self._pull_from(other)
        await other._pull_from(self)
        self._advertise()
        other._advertise()
        return peer

    async def disconnect(self, peer_id: str, block_seconds: float) -> None:
        self._peers.pop(peer_id, None)
        other = self._hub.members.get(peer_id)
        if other is not None:
            other._peers.pop(self.peer_id, None)

    async def fetch_blocks(self, cids: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for other in self._connected():
            for cid in cids:
                if cid in found or other._sink is None:
                    continue
                block = await other._sink.get_block(cid)
                if block is not None and verify_block(cid, block):
                    found[cid] = block
        return found

    async def fetch_records(self, cids: Sequence[str]) -> list[SignedRecord]:
        found: dict[str, SignedRecord] = {}
        for other in self._connected():
            missing = [cid_to_bytes(c) for c in cids if c not in found]
            if not missing or other._sink is None:
                continue
            for record in self._verified(other._sink.signed_records(missing), other.peer_id):
                found[record.cid] = record
        return list(found.values())

    async def ask(self, peer_id: str, query: PeerRequest, budget: float) -> PeerAnswer:
        other = self._hub.members.get(peer_id)
        if other is None or peer_id not in self._peers or other._sink is None:
            raise PeerUnavailable(f"{peer_id} is not connected")
        try:
            async with asyncio.timeout(budget):
                return await other._sink.answer_query(query, self.peer_id)
        except TimeoutError as exc:
            raise PeerUnavailable(f"{peer_id} gave no answer in {budget} s", timeout=True) from exc
        except KnowhubError as exc:
            code = refusal_code(exc)
            raise PeerRefused(f"{peer_id} refused: {code}: {exc.message}", reason=code) from exc

    def penalise(self, peer_id: str, reason: str) -> None:
        self._offence(peer_id, reason)

    async def close(self) -> None:
        for peer in list(self._peers):
            await self.disconnect(peer, 0.0)
        self._hub.members.pop(self.peer_id, None)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the other side ------------------------------------------------------------------------

    async def _gossip(
        self, name: str, wire: list[tuple[bytes, bytes]], origin: str, sender: str
    ) -> None:
        """A gossip message published by ``origin``, forwarded by ``sender``: validated, then
        delivered and forwarded to this node's other peers (as gossipsub relays what its
        validator accepts), each message once."""
        assert self._sink is not None
        message = _message_id(wire, origin)
        if message in self._seen:
            return
        self._seen.add(message)
        try:
            records = [verify_record(block, signature) for block, signature in wire]
        except KnowhubError as exc:
            self._offence(sender, exc.message)
            return
        reason = outside_set(records, name) or self._sink.judge(records)
        if reason is not None:
            self._offence(sender, reason)
            return
        self.accepted += 1
        self._forward(name, wire, origin, except_peer=sender)
        await self._deliver(records, sender, Origin.GOSSIP)

    async def _pull_from(self, other: MemoryNetwork) -> None:
        """Catch-up: fetch what ``other`` has and this node lacks."""
        if self._sink is None or other._sink is None:
            return
        held = self._sink.held()
        for name in other._sink.sets():
            if not held.holds_set(name):
                continue
            mine = set(self._sink.record_cids(name))
            lacking = [c for c in other._sink.record_cids(name) if c not in mine]
            if lacking:
                records = self._verified(other._sink.signed_records(lacking), other.peer_id)
                if any(set_of(r) != name for r in records):
                    self._offence(other.peer_id, f"records outside set {name!r}")
                    continue
                await self._deliver(records, other.peer_id, Origin.SYNC)
        self.syncs += 1

    def _verified(self, pairs: Sequence[tuple[bytes, str]], peer: str) -> list[SignedRecord]:
        out = []
        for block, signature in pairs:
            try:
                out.append(verify_record(block, signature))
            except KnowhubError as exc:
                self._offence(peer, exc.message)
        return out

    async def _deliver(self, records: list[SignedRecord], peer: str, origin: Origin) -> None:
        assert self._sink is not None
        if not records:
            return
        try:
            await self._sink.receive_records(records, peer, origin)
        except KnowhubError as exc:
            log.warning("node refused %d records from %s: %s", len(records), peer, exc.message)
            return
        self._received[peer] = self._received.get(peer, 0) + len(records)
        self._advertise_if_changed()

    # -- the directory -------------------------------------------------------------------------

    def _advertise_if_changed(self) -> None:
        if self._sink is not None and self._sink.set_version() != self._advertised:
            self._advertise()

    def _advertise(self) -> None:
        """Send this node's advert to its peers, who relay it once (as gossip)."""
        sink = self._sink
        if sink is None:
            return
        self._advertised = sink.set_version()
        sets = {}
        for name in sink.sets():
            cids = sink.record_cids(name)
            if cids and name != RECORDS_SET:
                digest = hashlib.sha256(b"".join(sorted(cids))).hexdigest()[:32]
                sets[name] = CollectionAdvert(facts=len(cids), digest=digest)
        self._advert_seq += 1
        advert = DirectoryEntry(
            peer_id=self.peer_id,
            model_cid=sink.model_cid(),
            holds_all=sink.held().all,
            collections=sets,
            seen_at=0.0,
            connected=False,
        )
        for other in self._connected():
            other._heard(advert, self._advert_seq)

    def _heard(self, advert: DirectoryEntry, seq: int) -> None:
        """A peer's advert, number ``seq`` of its adverts: kept if newer, relayed once."""
        peer = advert.peer_id
        if peer == self.peer_id or self._advert_seqs.get(peer, 0) >= seq:
            return
        self._advert_seqs[peer] = seq
        self._adverts[peer] = dataclasses.replace(advert, seen_at=time.time())
        for other in self._connected():
            if other.peer_id != peer:
                other._heard(advert, seq)

    def _offence(self, peer: str, reason: str) -> None:
        log.debug("offence by %s: %s", peer, reason)
        self._rejected[peer] = self._rejected.get(peer, 0) + 1

    def _connected(self) -> list[MemoryNetwork]:
        return [m for p in self._peers if (m := self._hub.members.get(p)) is not None]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _message_id(wire: list[tuple[bytes, bytes]], origin: str) -> bytes:
    digest = hashlib.sha256(origin.encode())
    for block, signature in wire:
        digest.update(block)
        digest.update(signature)
    return digest.digest()
