"""The host's connection upkeep, as trio tasks: keep bootstrap peers connected, redial useful
peers that left, trim connections above the high watermark, and hang up on peers marked for
it (banned as they offended, or connecting while banned).

Each loop takes what it needs as arguments (the host, the ``PeerBook``, the limits) and runs
until cancelled with the session's nursery (``p2p.host``). Who may be dialled and who is
trimmed is decided by ``p2p.peers``; these loops only act on it.
"""

from __future__ import annotations

import logging

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

from p2p.admission import ConnectionLimits
from p2p.connections import resolved
from p2p.peers import PeerBook

log = logging.getLogger(__name__)

#: Seconds between two looks at the connection count (trimming) and the hang-up list.
TRIM_INTERVAL = 2.0
HANG_UP_INTERVAL = 0.2
#: Useful peers redialled at once (more that leave meanwhile wait for the next chance).
MAX_REDIALS = 8


async def keep_connected(host: IHost, book: PeerBook, address: str) -> None:
    """Dial a bootstrap peer, and redial with backoff whenever it is not connected."""
    try:
        info: PeerInfo = info_from_p2p_addr(multiaddr.Multiaddr(address))
    except Exception as exc:  # multiaddr and peer id parsers raise various types
        log.error("bad bootstrap address %s: %s", address, exc)
        return
    if info.peer_id == host.get_id():
        return  # a cluster-wide bootstrap list names this node too
    key = str(info.peer_id)
    book.protect(key)
    while True:
        if book.is_banned(key) or info.peer_id in host.get_connected_peers():
            await trio.sleep(1.0)
            continue
        wait = book.retry_in(key)
        if wait > 0:
            await trio.sleep(min(wait, 1.0))
            continue
        try:
            with trio.fail_after(10):  # resolved on every attempt: container IPs change
                await host.connect(await resolved(info))
            log.info("connected to bootstrap peer %s", key)
        except Exception as exc:
            log.info(
                "bootstrap peer %s unreachable (%r); retry in %.0f s",
                address,
                exc,
                book.retry_in(key),
            )


class Redialler:
    """Redials useful peers that left, a few at a time, as ``PeerBook.may_dial`` allows."""

    def __init__(self, host: IHost, book: PeerBook, nursery: trio.Nursery) -> None:
        self._host = host
        self._book = book
        self._nursery = nursery
        self._active: set[str] = set()

    def left(self, peer: ID) -> None:
        key = str(peer)
        if key in self._active or len(self._active) >= MAX_REDIALS:
            return
        if self._book.is_useful(key) and not self._book.is_banned(key):
            self._active.add(key)
            self._nursery.start_soon(self._redial, peer)

    async def _redial(self, peer: ID) -> None:
        key = str(peer)
        try:
            while peer not in self._host.get_connected_peers():
                if not self._book.may_dial(key):
                    wait = self._book.retry_in(key)
                    if wait <= 0:
                        return  # no longer trusted, banned, or given up
                    await trio.sleep(wait)
                    continue
                try:
                    with trio.fail_after(10):
                        await self._host.connect(PeerInfo(peer, []))
                    log.info("reconnected to useful peer %s", key)
                except Exception as exc:
                    log.debug("redial of %s failed: %r", key, exc)
        finally:
            self._active.discard(key)


async def trim(host: IHost, book: PeerBook, limits: ConnectionLimits) -> None:
    """Close connections above the high watermark down to the low one (``p2p.peers``)."""
    while True:
        await trio.sleep(TRIM_INTERVAL)
        connected = [str(p) for p in host.get_connected_peers()]
        chosen = book.choose_trim(
            connected, limits.low_watermark, limits.high_watermark, limits.grace_seconds
        )
        if chosen:
            log.info("trimming %d of %d connections", len(chosen), len(connected))
        async with trio.open_nursery() as nursery:  # closing one takes a while: all at once
            for key in chosen:
                nursery.start_soon(hang_up, host, ID.from_base58(key))


async def hang_up_marked(host: IHost, marked: set[ID]) -> None:
    """Disconnect the peers put in ``marked`` (banned: ``p2p.host``)."""
    while True:
        await trio.sleep(HANG_UP_INTERVAL)
        async with trio.open_nursery() as nursery:
            while marked:
                nursery.start_soon(hang_up, host, marked.pop())


async def hang_up(host: IHost, peer: ID) -> None:
    try:
        await host.disconnect(peer)
    except Exception:  # already gone, or closing failed half-way: nothing more to do
        log.debug("disconnect %s failed", peer, exc_info=True)
