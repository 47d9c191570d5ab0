"""Which connections py-libp2p's swarm accepts and dials, and when an inbound slot is free again.

Why. py-libp2p 0.8.1 (checked against that version; look again on every upgrade) admits
inbound connections through ``Swarm._handle_inbound_connection``, which takes a token of a
``CapacityLimiter`` sized ``max_connections - min_connections`` and returns it when
``_do_handle_inbound_connection`` returns. That method, after upgrading the connection, awaits
``self.manager.wait_finished()``: the end of the whole swarm, not of the connection. So every
inbound connection holds its slot for the life of the node, peers that left and peers that
were banned included, and once ``max_connections`` peers have ever connected, every further
dial fails ("failed to negotiate the secure protocol"): a node could be evicted from the
network by ~300 throwaway peer ids (issue 15). Separately, the swarm dials any peer something
opens a stream to (``Swarm.new_stream`` -> ``dial_peer``): pubsub, identify and the sync queue
redialled peers that had left, on ephemeral ports, for minutes.

What. ``install`` changes one swarm instance, no library code:

* ``_do_handle_inbound_connection`` is replaced by one that asks ``Admission.admit`` with the
  remote IP first (a per-address cap and a hard cap on inbound connections, both counted from
  accept, handshakes included, and a rate for penalised addresses), upgrades the connection
  the library's way (``upgrade_inbound_raw_conn``: security, muxer, ``add_conn``), then waits
  for **that** connection to close, so the limiter token and the address's count come back when
  the peer leaves or is disconnected;
* ``dial_peer`` asks ``may_dial(peer)`` first (``p2p.peers``: only trusted peers, not banned,
  with backoff) and reports each outcome to ``dialled``. Peers already connected are not
  dialled, so nothing changes for them.

Without the first change, ``tests/unit/test_p2p_admission.py`` (the library's limiter token
never comes back) and the churn test of ``tests/integration/test_p2p_abuse.py`` (336 of 400
peers refused at a cap of 64) fail; the former also holds the dial gate.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import trio
from libp2p.abc import IMuxedConn, INetStream
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.exceptions import SwarmException
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub

log = logging.getLogger(__name__)

#: How often a waiting inbound handler looks again whether its connection is gone, seconds
#: (it also wakes on the muxer's close event where the muxer has one).
_CLOSED_POLL = 5.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    #: Trimming starts above ``high_watermark`` open connections and stops at ``low_watermark``.
    low_watermark: int = 32
    high_watermark: int = 64
    #: Connections younger than this are not trimmed, seconds.
    grace_seconds: float = 30.0
    #: Hard cap on connections (py-libp2p's ``max_connections``, inbound and outbound) and on
    #: inbound connections being accepted or open at once.
    max_connections: int = 256
    #: Inbound connections from one IP address at once (accepted, in handshake or open).
    max_per_ip: int = 64
    #: New inbound connections per second (and burst) from an address penalised for offences
    #: (``p2p.peers``): each costs ~10-30 ms of CPU in handshakes, so a Sybil swarm on one
    #: address is throttled at accept, before any handshake.
    penalised_rate: float = 1.0
    penalised_burst: int = 4


class Admission:
    """Counts inbound connections per address and in all; refuses beyond the limits, and
    throttles new connections from penalised addresses (a token bucket per address)."""

    def __init__(
        self,
        limits: ConnectionLimits,
        penalised: Callable[[str | None], bool] = lambda _: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._penalised = penalised
        self._clock = clock
        self._by_ip: Counter[str] = Counter()
        self._buckets: dict[str, tuple[float, float]] = {}  # ip -> (tokens, at)
        self.open = 0
        self.refused = 0

    def admit(self, ip: str | None) -> bool:
        key = ip or "?"
        limits = self._limits
        if (
            self.open >= limits.max_connections
            or self._by_ip[key] >= limits.max_per_ip
            or (self._penalised(ip) and not self._take_token(key))
        ):
            self.refused += 1
            return False
        self.open += 1
        self._by_ip[key] += 1
        return True

    def _take_token(self, key: str) -> bool:
        now = self._clock()
        burst = float(self._limits.penalised_burst)
        tokens, at = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - at) * self._limits.penalised_rate)
        if len(self._buckets) > 4096:  # addresses penalised long ago: full buckets anyway
            self._buckets.clear()
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True

    def release(self, ip: str | None) -> None:
        key = ip or "?"
        self.open -= 1
        self._by_ip[key] -= 1
        if self._by_ip[key] <= 0:
            del self._by_ip[key]

    def per_ip(self, ip: str) -> int:
        return self._by_ip[ip]


def raw_remote_ip(stream: Any) -> str | None:
    """The remote IP of a raw (not yet upgraded) connection, when its socket says; once
    upgraded, ``p2p.connections.remote_ip`` reads it from the connection's multiaddrs."""
    try:
        address = stream.get_remote_address()
    except Exception:  # transports differ in what they offer
        return None
    return str(address[0]) if address else None


def install(
    swarm: Swarm,
    admission: Admission,
    may_dial: Callable[[str], bool],
    dialled: Callable[[str, bool], None],
) -> None:
    """Change ``swarm`` as the module docstring says."""
    original_inbound = swarm._do_handle_inbound_connection
    original_dial = swarm.dial_peer

    async def handle_inbound(read_write_closer: Any, maddr: Any, failure_event: Any) -> None:
        if isinstance(read_write_closer, IMuxedConn):  # QUIC and the like: not used here
            await original_inbound(cast(Any, read_write_closer), maddr, failure_event)
            return
        ip = raw_remote_ip(read_write_closer)
        if not admission.admit(ip):
            log.debug("inbound connection from %s refused: connection limits", ip)
            with contextlib.suppress(Exception):
                await read_write_closer.close()
            return
        try:
            raw = RawConnection(read_write_closer, False)
            try:
                muxed = await swarm.upgrade_inbound_raw_conn(raw, maddr)
            except Exception as exc:  # the library's own handler logs these at debug too
                log.debug("inbound connection from %s not upgraded: %r", ip, exc)
                with contextlib.suppress(Exception):
                    await raw.close()
                return
            try:
                await wait_closed(swarm, muxed)
            except BaseException:  # the swarm is going (cancelled): so is the connection
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await _close(muxed)
                raise
        finally:
            admission.release(ip)

    async def dial_peer(peer_id: ID) -> Any:
        key = str(peer_id)
        if swarm.get_connections(peer_id):
            return await original_dial(peer_id)
        if not may_dial(key):
            raise SwarmException(f"not dialling {key}: not a trusted peer now (p2p.admission)")
        try:
            connections = await original_dial(peer_id)
        except BaseException:
            dialled(key, False)
            raise
        dialled(key, True)
        return connections

    swarm._do_handle_inbound_connection = handle_inbound  # type: ignore[method-assign]
    swarm.dial_peer = dial_peer  # type: ignore[method-assign]


async def wait_closed(swarm: Swarm, muxed: IMuxedConn) -> None:
    """Return once ``muxed`` is closed, the swarm no longer holds a connection over it, or the
    swarm has stopped (as the library's handler does then; the listener closes the socket)."""
    async with trio.open_nursery() as nursery:

        async def swarm_finished() -> None:
            await swarm.manager.wait_finished()
            nursery.cancel_scope.cancel()

        nursery.start_soon(swarm_finished)
        event: trio.Event | None = getattr(muxed, "event_closed", None)
        while not muxed.is_closed and _held(swarm, muxed):
            with trio.move_on_after(_CLOSED_POLL):
                if event is not None:
                    await event.wait()
                else:
                    await trio.sleep(_CLOSED_POLL)
        nursery.cancel_scope.cancel()


async def _close(muxed: IMuxedConn) -> None:
    try:
        await muxed.close()
    except Exception:  # half-closed already: nothing more to do
        log.debug("closing an inbound connection failed", exc_info=True)


def _held(swarm: Swarm, muxed: IMuxedConn) -> bool:
    conns = swarm.connections.get(muxed.peer_id, [])
    return any(getattr(conn, "muxed_conn", None) is muxed for conn in conns)


def gate_pubsub_streams(pubsub: Pubsub, refuses: Callable[[ID], bool]) -> None:
    """Reset, unread, each new gossip stream from a peer ``refuses`` names (banned, or untrusted
    on a penalised address) instead of parsing, signature-checking and then refusing each of
    its messages. Streams opened before the peer was refused are read on; the topic
    validators refuse their messages. (Replaces ``continuously_read_stream`` on this instance;
    ``Pubsub.stream_handler`` looks it up per stream.)"""
    read = pubsub.continuously_read_stream

    async def gated(stream: INetStream) -> None:
        if refuses(stream.muxed_conn.peer_id):
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        await read(stream)

    pubsub.continuously_read_stream = gated  # type: ignore[method-assign]
