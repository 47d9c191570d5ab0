"""``/knowhub/query/1``: answer peers' federated queries (and the pools and fetch requests
of two-phase keyword and hybrid queries), and ask peers.

One request and one answer per stream, framed like sync (unsigned varint length, then
DAG-CBOR: ``p2p.query_wire``); the answer's type follows the request's (``PeerRequest``). The
asking side is ``ask_peer``; its caller bounds it in time.

The answering side (``QueryServer``) is a public endpoint and defends itself like one: a peer
holds at most ``streams_per_peer`` query streams open at once and all peers ``streams`` (more
are reset unread); the request must arrive whole within ``QueryLimits.read_timeout`` and be at
most ``MAX_REQUEST_BYTES``; each peer gets a token bucket (``rate`` per second, ``burst``:
every request, of any type, takes one token) and at most ``per_peer`` queries at once, and all
peers together ``concurrency`` at once. Beyond a bound the answer is an immediate ``busy``
error, never a queue: queries from the node's own clients go first. A malformed request is
answered ``invalid`` and is an offence of the peer; a peer that merely goes quiet or hangs up
is not. What the node refuses (another model, no collection held, overload) comes back as an
error code (``node.federation.refusal_code``), not an offence.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from node.errors import InvalidAnswer, KnowhubError, PeerRefused, PeerUnavailable
from node.federation import refusal_code
from node.ports import PeerAnswer, PeerRequest, RecordSink
from p2p.bridge import TrioThread
from p2p.query_wire import (
    MAX_ANSWER_BYTES,
    MAX_REQUEST_BYTES,
    RemoteError,
    decode_answer,
    decode_request,
    encode_answer,
    encode_error,
    encode_request,
)
from p2p.sync import SyncError, encode_message, read_sized_message
from p2p.wire import InvalidEnvelope, encode_varint

log = logging.getLogger(__name__)

QUERY_PROTOCOL = TProtocol("/knowhub/query/1")
#: Peers whose token buckets are remembered at most (the oldest are forgotten beyond).
MAX_BUCKETS = 4096


@dataclass(frozen=True, slots=True)
class QueryLimits:
    #: Remote queries answered at once, all peers together.
    concurrency: int = 4
    #: Remote queries answered at once for one peer.
    per_peer: int = 2
    #: Sustained queries per second from one peer, and the burst above it.
    rate: float = 10.0
    burst: int = 20
    #: Seconds for a whole request to arrive, and for the answer to be taken.
    read_timeout: float = 5.0
    write_timeout: float = 10.0
    #: Query streams open at once (reading included), per peer and in all: beyond, a new
    #: stream is reset at once, before a byte of it is read.
    streams_per_peer: int = 8
    streams: int = 64


@dataclass(slots=True)
class QueryCounts:
    """The query protocol's counters, both roles (``NetworkStatus`` reports them)."""

    queries_answered: int = 0
    #: Requests answered ``busy`` (over the rate, per-peer or total bounds).
    queries_busy: int = 0
    #: Framed requests and answers on the wire, asked and answered.
    query_bytes: int = 0


class QueryServer:
    """Answers ``/knowhub/query/1`` with the node's ``RecordSink.answer_query``."""

    def __init__(
        self,
        sink: RecordSink,
        bridge: TrioThread,
        on_offence: Callable[[ID, str], None],
        refuses: Callable[[ID], bool],
        limits: QueryLimits | None = None,
        counts: QueryCounts | None = None,
    ) -> None:
        self._sink = sink
        self._bridge = bridge
        self._on_offence = on_offence
        self._refuses = refuses
        self.limits = limits or QueryLimits()
        self._running: Counter[ID] = Counter()
        self._open: Counter[ID] = Counter()
        self._slots = trio.CapacityLimiter(self.limits.concurrency)
        self._buckets: dict[ID, tuple[float, float]] = {}
        self.counts = counts or QueryCounts()

    async def handle(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        limits = self.limits
        crowded = sum(self._open.values()) >= limits.streams
        if self._refuses(peer) or crowded or self._open[peer] >= limits.streams_per_peer:
            # not an offence: an honest node with many concurrent queries opens many streams
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        self._open[peer] += 1
        clean = False
        try:
            clean = await self._serve(stream, peer)
        except Exception:
            log.debug("query stream from %s failed", peer, exc_info=True)
        finally:
            self._open[peer] -= 1
            if self._open[peer] <= 0:
                del self._open[peer]
            with contextlib.suppress(Exception):
                await (stream.close() if clean else stream.reset())

    async def _serve(self, stream: INetStream, peer: ID) -> bool:
        with trio.move_on_after(self.limits.read_timeout) as reading:
            try:
                got = await read_sized_message(stream, MAX_REQUEST_BYTES)
            except SyncError as exc:
                return await self._reply(stream, peer, encode_error("invalid", str(exc)), exc)
        if reading.cancelled_caught or got is None:
            return False  # quiet or gone: not an offence
        self.counts.query_bytes += got[1] + len(encode_varint(got[1]))
        try:
            query = decode_request(got[0])
        except InvalidEnvelope as exc:
            return await self._reply(stream, peer, encode_error("invalid", exc.message), exc)
        if not self._admit(peer):
            self.counts.queries_busy += 1
            return await self._reply(stream, peer, encode_error("busy", "over the query rate"))
        try:
            self._slots.acquire_on_behalf_of_nowait(stream)
        except trio.WouldBlock:
            self.counts.queries_busy += 1
            return await self._reply(stream, peer, encode_error("busy", "too many queries"))
        self._running[peer] += 1
        try:
            answer = await self._answer(query, peer)
        finally:
            self._slots.release_on_behalf_of(stream)
            self._running[peer] -= 1
            if self._running[peer] <= 0:
                del self._running[peer]
        return await self._reply(stream, peer, answer)

    async def _answer(self, query: PeerRequest, peer: ID) -> dict[str, Any]:
        try:
            answer = await self._bridge.to_asyncio(self._sink.answer_query(query, str(peer)))
        except KnowhubError as exc:
            return encode_error(refusal_code(exc), exc.message)
        self.counts.queries_answered += 1
        return encode_answer(answer)

    def _admit(self, peer: ID) -> bool:
        """Within the peer's token bucket and its concurrent-query cap."""
        limits = self.limits
        if self._running[peer] >= limits.per_peer:
            return False
        now = trio.current_time()
        tokens, last = self._buckets.pop(peer, (float(limits.burst), now))
        tokens = min(float(limits.burst), tokens + (now - last) * limits.rate)
        if len(self._buckets) >= MAX_BUCKETS:
            del self._buckets[next(iter(self._buckets))]
        if tokens < 1.0:
            self._buckets[peer] = (tokens, now)
            return False
        self._buckets[peer] = (tokens - 1.0, now)
        return True

    async def _reply(
        self,
        stream: INetStream,
        peer: ID,
        message: dict[str, Any],
        offence: Exception | None = None,
    ) -> bool:
        if offence is not None:
            self._on_offence(peer, f"query: {offence}")
        framed = await trio.to_thread.run_sync(encode_message, message)
        self.counts.query_bytes += len(framed)
        with trio.move_on_after(self.limits.write_timeout) as writing:
            await stream.write(framed)
        return not writing.cancelled_caught


async def ask_peer(host: IHost, peer: ID, query: PeerRequest) -> tuple[PeerAnswer, int]:
    """``peer``'s answer to ``query`` (of the type its request pairs with), and the bytes of
    request and answer on the wire.
    ``RemoteError`` when it answers an error; ``InvalidEnvelope`` or ``SyncError`` when the
    answer is malformed; stream errors as raised. The caller bounds the time."""
    stream = await host.new_stream(peer, [QUERY_PROTOCOL])
    try:
        request = encode_message(encode_request(query))
        await stream.write(request)
        got = await read_sized_message(stream, MAX_ANSWER_BYTES)
        if got is None:
            raise SyncError("peer closed the stream without an answer")
        answer = await trio.to_thread.run_sync(decode_answer, got[0], query)
        return answer, len(request) + got[1] + len(encode_varint(got[1]))
    finally:
        with contextlib.suppress(Exception):
            await stream.close()


async def ask_within(
    host: Callable[[], IHost], peer: ID, query: PeerRequest, budget: float
) -> tuple[PeerAnswer, int]:
    """``ask_peer`` within ``budget`` seconds, its failures as the node's errors:
    ``PeerUnavailable`` (no answer in time: ``timeout``; or unreachable), ``PeerRefused`` (an
    error answer), ``InvalidAnswer`` (malformed: the caller penalises the peer)."""
    try:
        with trio.fail_after(budget):
            return await ask_peer(host(), peer, query)
    except trio.TooSlowError as exc:
        raise PeerUnavailable(f"{peer} gave no answer in {budget} s", timeout=True) from exc
    except RemoteError as exc:
        raise PeerRefused(f"{peer} refused: {exc}", reason=exc.code) from exc
    except (InvalidEnvelope, SyncError) as exc:
        raise InvalidAnswer(f"{peer} sent a malformed answer: {exc}") from exc
    except KnowhubError:
        raise
    except Exception as exc:  # stream, muxer and dial errors alike
        raise PeerUnavailable(f"cannot ask {peer}: {exc!r}") from exc
