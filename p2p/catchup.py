"""When the node asks its peers for a catch-up sync (``p2p.sync.sync_with``), one at a time.

What. ``CatchUp`` owns the queue of sync requests and the two loops that serve it, per run of
the host (``run``):

* on connect, a trusted peer (``p2p.peers``: bootstrap, operator-connected, recently useful)
  is queued at once; any other after it has stayed ``CONNECT_SYNC_DELAY`` seconds: a peer that
  connects and leaves at once (a Sybil churning fresh ids) costs no sync stream, which was half
  of what such a connection cost the node (issue 15); a peer refused unread is never asked;
* every ``interval`` seconds, every connected peer is queued;
* requests are served one after another; a peer gone or refused meanwhile is skipped; each sync
  has 120 s. ``syncs`` counts the completed ones, ``last_error`` says what the last one hit.

The queue holds 256 requests; beyond, requests are dropped (the next round asks again). Runs on
the trio thread only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID

from node.ports import RecordSink
from node.records import SignedRecord
from p2p.peers import PeerBook
from p2p.sync import sync_with

log = logging.getLogger(__name__)

#: Seconds an untrusted peer must stay connected before the node asks it for a sync.
CONNECT_SYNC_DELAY = 2.0
#: Seconds one sync may take.
SYNC_TIMEOUT = 120.0


class CatchUp:
    def __init__(
        self,
        book: PeerBook,
        interval: float,
        deliver: Callable[[list[SignedRecord], str], Awaitable[int]],
    ) -> None:
        self._book = book
        self._interval = interval
        self._deliver = deliver
        self._queue: trio.MemorySendChannel[ID] | None = None
        self._due: dict[ID, float] = {}  # untrusted peers to ask once they have stayed
        self.syncs = 0
        self.last_error: str | None = None

    def connected(self, peer: ID) -> None:
        """A new connection to ``peer`` (banned peers are hung up on before this)."""
        key = str(peer)
        if self._queue is None or self._book.refuses(key):
            return
        if not self._book.is_trusted(key):
            self._due[peer] = trio.current_time() + CONNECT_SYNC_DELAY
            return
        with contextlib.suppress(trio.WouldBlock):
            self._queue.send_nowait(peer)

    async def run(self, host: IHost, sink: RecordSink) -> None:
        """Serve sync requests for ``host`` until cancelled."""
        send, receive = trio.open_memory_channel[ID](256)
        self._queue = send
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve, host, sink, receive)
                await self._schedule(host, send)
        finally:
            self._queue = None
            self._due.clear()

    async def _schedule(self, host: IHost, queue: trio.MemorySendChannel[ID]) -> None:
        next_round = trio.current_time() + self._interval
        while True:
            await trio.sleep(min(1.0, self._interval))
            now = trio.current_time()
            connected = set(host.get_connected_peers())
            due = [peer for peer, at in self._due.items() if at <= now]
            for peer in due:
                del self._due[peer]
            if now >= next_round:
                next_round = now + self._interval
                self._due.clear()
                due = list(connected)
            for peer in due:
                if peer not in connected:
                    continue
                try:
                    queue.send_nowait(peer)
                except trio.WouldBlock:
                    break

    async def _serve(
        self, host: IHost, sink: RecordSink, requests: trio.MemoryReceiveChannel[ID]
    ) -> None:
        async for peer in requests:
            if peer not in host.get_connected_peers() or self._book.refuses(str(peer)):
                continue  # gone meanwhile (a dial would be refused anyway), or refused
            try:
                with trio.fail_after(SYNC_TIMEOUT):
                    fetched = await sync_with(host, peer, sink, self._deliver)
                self.syncs += 1
                self.last_error = None
                if fetched:
                    log.info("sync with %s: fetched %d missing facts", peer, fetched)
            except Exception as exc:
                self.last_error = f"{peer}: {exc!r}"
                log.warning("sync with %s failed: %r", peer, exc)
