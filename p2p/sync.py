"""``/knowhub/sync/1.0.0``: catch up with a peer by reconciling fact CID sets, then fetching
and verifying what is missing.

On one stream the initiator sends length-prefixed (unsigned varint) DAG-CBOR messages and reads
one answer to each: ``recon`` rounds (``p2p.reconcile``) until no range differs, then ``get``
requests of at most ``MAX_GET`` binary CIDs, answered by ``records``
(``{"t": "records", "records": [{"block", "sig"}]}``, only the facts the responder holds). Every
record is verified like a gossip message, and must be one that was asked for. ``blocks``
requests fetch other blocks by CID (batch manifests), each checked against its CID.

The responder (``SyncServer``) defends itself: a request must arrive within
``SYNC_IDLE_TIMEOUT`` seconds (whole, length prefix to last byte) and its answer must be taken
within as long, or the stream is reset; a peer holds at most ``MAX_STREAMS_PER_PEER`` sync
streams at once; reconciliation runs in worker threads (at most ``RECON_THREADS`` at a time),
never on the trio loop; ``recon`` answers keep to ``p2p.reconcile.answer_budget`` and
``records``/``blocks`` answers to the frame limit (what does not fit is omitted, as for facts
the responder lacks: the initiator asks again). A malformed or refused request (bad framing,
not DAG-CBOR, an unknown type, a recon request ``p2p.reconcile.check_request`` refuses, too
many streams) is answered with ``{"t": "error"}``, the stream is closed, and the peer is
reported to ``on_offence``; a peer that merely hangs up or goes quiet is not.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import dag_cbor
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from multiformats import CID

from node.cid import cid_from_bytes, cid_to_bytes, verify_block
from node.errors import KnowhubError
from node.ports import RecordSink
from node.records import SignedRecord
from p2p.bridge import TrioThread
from p2p.reconcile import ItemSet, RequestRefused, absorb, initial_request, respond
from p2p.wire import (
    MAX_SYNC_MESSAGE_BYTES,
    InvalidEnvelope,
    encode_varint,
    verify_record,
)

log = logging.getLogger(__name__)

SYNC_PROTOCOL = TProtocol("/knowhub/sync/1.0.0")
MAX_GET = 256
MAX_ROUNDS = 64
#: Seconds a responder waits for the next request (all of it), or for its answer to be taken.
SYNC_IDLE_TIMEOUT = 60.0
#: Sync streams one peer may have open with a responder at once.
MAX_STREAMS_PER_PEER = 8
#: Reconciliations computed at once (worker threads), over all streams.
RECON_THREADS = 2
#: A binary CID is 36 bytes for sha2-256; anything much longer is not a CID.
MAX_CID_BYTES = 128
#: Room kept in a records/blocks answer for its map and list headers.
_ANSWER_HEADROOM = 64

#: Called with a peer and the reason when it sends a malformed or abusive request.
OffenceFn = Callable[[ID, str], None]


class SyncError(Exception):
    """The peer broke the protocol (malformed message, refused request)."""


class SyncClosed(SyncError):
    """The peer closed the stream in the middle of a message."""


async def _read_exactly(stream: INetStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise SyncClosed("stream closed mid-message")
        buf += chunk
    return bytes(buf)


async def read_sized_message(
    stream: INetStream, limit: int = MAX_SYNC_MESSAGE_BYTES
) -> tuple[dict[str, Any], int] | None:
    """The next message and its size in bytes (without the prefix), or None at a clean end;
    ``SyncError`` for a message over ``limit`` bytes (refused unread)."""
    size = shift = 0
    for i in range(10):
        byte = await stream.read(1)
        if not byte:
            if i == 0:
                return None
            raise SyncClosed("stream closed inside a length prefix")
        size |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    else:
        raise SyncError("length prefix too long")
    if size > limit:
        raise SyncError(f"message of {size} bytes is over {limit}")
    data = await _read_exactly(stream, size)
    try:
        obj = dag_cbor.decode(data)
    except Exception as exc:  # dag_cbor raises several unrelated types for bad input
        raise SyncError(f"message is not DAG-CBOR: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise SyncError("message must be a map with a string t")
    return obj, size


async def read_message(stream: INetStream) -> dict[str, Any] | None:
    """The next message, or None at a clean end of stream."""
    got = await read_sized_message(stream)
    return None if got is None else got[0]


def encode_message(obj: dict[str, Any]) -> bytes:
    """A sync message as framed on the stream: unsigned varint length, then DAG-CBOR."""
    data = dag_cbor.encode(obj)
    return encode_varint(len(data)) + data


async def write_message(stream: INetStream, obj: dict[str, Any]) -> None:
    await stream.write(encode_message(obj))


def _recon_answer(own: ItemSet, request: dict[str, Any], size: int) -> bytes:
    """The framed answer to a recon request (worker thread: this is the CPU-bound part)."""
    data = dag_cbor.encode(respond(own, request, size))
    if len(data) > MAX_SYNC_MESSAGE_BYTES:  # respond() keeps to its budget: a bug if seen
        raise RequestRefused("the answer would exceed the frame limit")
    return encode_varint(len(data)) + data


def _capped(items: list[Any], size_of: Callable[[Any], int]) -> list[Any]:
    """The longest prefix of ``items`` whose encoded sizes fit in one answer frame."""
    room = MAX_SYNC_MESSAGE_BYTES - _ANSWER_HEADROOM
    out = []
    for item in items:
        room -= size_of(item)
        if room < 0:
            break
        out.append(item)
    return out


class SyncServer:
    """Answers sync requests from the node's catalog (read in worker threads)."""

    def __init__(
        self,
        sink: RecordSink,
        bridge: TrioThread,
        on_offence: OffenceFn | None = None,
        refuses: Callable[[ID], bool] | None = None,
    ) -> None:
        self._sink = sink
        self._bridge = bridge
        self._on_offence = on_offence
        #: Peers whose requests are refused unread (banned, untrusted on a penalised address).
        self._refuses = refuses
        self._cache: tuple[int, ItemSet] | None = None
        self._streams: Counter[ID] = Counter()
        self._limiter = trio.CapacityLimiter(RECON_THREADS)

    async def own_set(self) -> ItemSet:
        count = await trio.to_thread.run_sync(self._sink.set_version)
        if self._cache is None or self._cache[0] != count:
            items = await trio.to_thread.run_sync(self._sink.record_cids)
            built = await trio.to_thread.run_sync(ItemSet, items, limiter=self._limiter)
            self._cache = (count, built)
        return self._cache[1]

    async def handle(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        if self._refuses is not None and self._refuses(peer):
            with contextlib.suppress(Exception):  # already going: nothing more to do
                await stream.reset()
            return
        self._streams[peer] += 1
        clean = False
        try:
            if self._streams[peer] > MAX_STREAMS_PER_PEER:
                raise SyncError(f"more than {MAX_STREAMS_PER_PEER} sync streams at once")
            clean = await self._serve(stream)
        except SyncClosed as exc:
            log.debug("sync stream from %s: %s", peer, exc)
        except (SyncError, ValueError) as exc:  # RequestRefused is a ValueError
            log.warning("sync request from %s refused: %s", peer, exc)
            if self._on_offence is not None:
                self._on_offence(peer, f"sync: {exc}")
            with trio.move_on_after(5):
                await write_message(stream, {"t": "error", "message": str(exc)[:200]})
                clean = True  # close, not reset: a reset would drop the answer in flight
        except Exception:
            log.debug("sync stream from %s failed", peer, exc_info=True)
        finally:
            self._streams[peer] -= 1
            if self._streams[peer] <= 0:
                del self._streams[peer]
            try:
                if clean:
                    await stream.close()
                else:
                    await stream.reset()
            except Exception:
                log.debug("closing a sync stream failed", exc_info=True)

    async def _serve(self, stream: INetStream) -> bool:
        """Answer requests until the peer closes the stream (True) or goes quiet (False)."""
        peer = stream.muxed_conn.peer_id
        while True:
            with trio.move_on_after(SYNC_IDLE_TIMEOUT) as reading:
                got = await read_sized_message(stream)
            if reading.cancelled_caught:
                log.info("sync stream from %s idle for %.0f s: reset", peer, SYNC_IDLE_TIMEOUT)
                return False
            if got is None:
                return True
            framed = await self._answer(*got)
            with trio.move_on_after(SYNC_IDLE_TIMEOUT) as writing:
                await stream.write(framed)
            if writing.cancelled_caught:
                log.info("sync answer to %s not taken in %.0f s: reset", peer, SYNC_IDLE_TIMEOUT)
                return False

    async def _answer(self, msg: dict[str, Any], size: int) -> bytes:
        if msg["t"] == "recon":
            own = await self.own_set()
            return await trio.to_thread.run_sync(
                _recon_answer, own, msg, size, limiter=self._limiter
            )
        if msg["t"] == "get":
            cids = _cid_list(msg)
            records = await trio.to_thread.run_sync(self._sink.signed_records, cids)
            wire = [{"block": block, "sig": bytes.fromhex(sig[2:])} for block, sig in records]
            fitting = _capped(wire, lambda r: len(r["block"]) + len(r["sig"]) + 24)
            answer: dict[str, Any] = {"t": "records", "records": fitting}
            return await trio.to_thread.run_sync(encode_message, answer)
        if msg["t"] == "blocks":
            blocks = []
            for cid in _cid_list(msg):
                try:
                    block = await self._bridge.to_asyncio(self._sink.get_block(cid_from_bytes(cid)))
                except KnowhubError:
                    block = None  # not a CID this node can read: as if it did not hold it
                if block is not None:
                    blocks.append(block)
            fitting = _capped(blocks, lambda b: len(b) + 9)
            return await trio.to_thread.run_sync(encode_message, {"t": "blocks", "blocks": fitting})
        raise SyncError(f"unknown message type {msg['t']!r}")


async def sync_with(
    host: IHost,
    peer: ID,
    sink: RecordSink,
    deliver: Callable[[list[SignedRecord], str], Awaitable[int]],
) -> int:
    """Fetch every fact ``peer`` has and this node lacks; return how many were fetched.

    Hashing, fingerprints and signature checks run in worker threads, off the trio loop."""
    stream = await host.new_stream(peer, [SYNC_PROTOCOL])
    try:
        cids = await trio.to_thread.run_sync(sink.record_cids)
        own = await trio.to_thread.run_sync(ItemSet, cids)
        request: dict[str, Any] | None = initial_request(own)
        missing: list[bytes] = []
        rounds = 0
        while request is not None:
            rounds += 1
            if rounds > MAX_ROUNDS:
                raise SyncError(f"no agreement after {MAX_ROUNDS} rounds")
            await write_message(stream, request)
            response = await _answer(stream, "recon")
            found, request = await trio.to_thread.run_sync(absorb, own, response)
            missing += found
        fetched = 0
        while missing:
            wanted, missing = missing[:MAX_GET], missing[MAX_GET:]
            await write_message(stream, {"t": "get", "cids": wanted})
            response = await _answer(stream, "records")
            facts = await trio.to_thread.run_sync(_verified, response, set(wanted))
            fetched += len(facts)
            if facts:
                await deliver(facts, peer.to_string())
                # an answer holds what fits in one frame: ask again for the rest
                got = {bytes(CID.decode(f.cid)) for f in facts}
                missing = [c for c in wanted if c not in got] + missing
        return fetched
    finally:
        await stream.close()


def _cid_list(msg: dict[str, Any]) -> list[bytes]:
    cids = msg.get("cids")
    if not isinstance(cids, list) or len(cids) > MAX_GET:
        raise SyncError(f"{msg['t']} needs a list of at most {MAX_GET} CIDs")
    if not all(isinstance(c, bytes) and 0 < len(c) <= MAX_CID_BYTES for c in cids):
        raise SyncError(f"CIDs are byte strings of 1-{MAX_CID_BYTES} bytes")
    return cids


async def fetch_blocks_from(host: IHost, peer: ID, cids: list[str]) -> dict[str, bytes]:
    """Blocks ``peer`` has among ``cids`` (at most MAX_GET), each checked against its CID."""
    stream = await host.new_stream(peer, [SYNC_PROTOCOL])
    try:
        await write_message(stream, {"t": "blocks", "cids": [cid_to_bytes(c) for c in cids]})
        response = await _answer(stream, "blocks")
    finally:
        await stream.close()
    blocks = response.get("blocks")
    if not isinstance(blocks, list) or len(blocks) > len(cids):
        raise SyncError("blocks must be a list no longer than the request")
    wanted = {c: CID.decode(c) for c in cids}
    out: dict[str, bytes] = {}
    for block in blocks:
        if not isinstance(block, bytes):
            raise SyncError("blocks are byte strings")
        match = next((c for c, cid in wanted.items() if verify_block(cid, block)), None)
        if match is None:
            raise SyncError("peer sent a block that matches none of the requested CIDs")
        out[match] = block
    return out


async def fetch_records_from(host: IHost, peer: ID, cids: list[str]) -> list[SignedRecord]:
    """Signed facts ``peer`` has among ``cids`` (at most MAX_GET), each verified."""
    stream = await host.new_stream(peer, [SYNC_PROTOCOL])
    try:
        wanted = [cid_to_bytes(c) for c in cids]
        await write_message(stream, {"t": "get", "cids": wanted})
        return _verified(await _answer(stream, "records"), set(wanted))
    finally:
        await stream.close()


async def _answer(stream: INetStream, kind: str) -> dict[str, Any]:
    response = await read_message(stream)
    if response is None:
        raise SyncError("peer closed the stream")
    if response["t"] == "error":
        raise SyncError(f"peer refused: {response.get('message')}")
    if response["t"] != kind:
        raise SyncError(f"expected {kind}, got {response['t']}")
    return response


def _verified(response: dict[str, Any], wanted: set[bytes]) -> list[SignedRecord]:
    records = response.get("records")
    if not isinstance(records, list) or len(records) > len(wanted):
        raise SyncError("records must be a list no longer than the request")
    out = []
    for record in records:
        if not isinstance(record, dict):
            raise SyncError("a record is a map")
        try:
            fact = verify_record(record.get("block"), record.get("sig"))
        except InvalidEnvelope as exc:
            raise SyncError(f"peer sent a bad record: {exc.message}") from exc
        if bytes(CID.decode(fact.cid)) not in wanted:
            raise SyncError(f"peer sent {fact.cid}, which was not asked for")
        out.append(fact)
    return out


async def from_peers(host: IHost, fetch: Any, cids: list[str], kind: type) -> Any:
    """Ask connected peers in turn for what is still missing, MAX_GET at a time, with ``fetch``
    (``fetch_blocks_from`` into a dict, or ``fetch_records_from`` into a list); a peer is asked
    again while its answers bring something (an answer holds one frame at most)."""
    got: Any = kind()
    missing = list(cids)

    def have() -> set[str]:
        return set(got) if isinstance(got, dict) else {f.cid for f in got}

    for peer in host.get_connected_peers():
        while missing:
            before = len(got)
            for start in range(0, len(missing), MAX_GET):
                try:
                    with trio.fail_after(60):
                        result = await fetch(host, peer, missing[start : start + MAX_GET])
                except Exception as exc:  # gone, refused, or a bad answer: ask the next peer
                    log.info("fetch from %s failed: %r", peer, exc)
                    break
                if isinstance(got, dict):
                    got.update(result)
                else:
                    got.extend(result)
            missing = [c for c in missing if c not in have()]
            if len(got) == before:
                break
    return got
