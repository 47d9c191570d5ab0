"""``/knowhub/sync/1.0.0``: catch up with a peer by reconciling fact CID sets, then fetching
and verifying what is missing.

On one stream the initiator sends length-prefixed (unsigned varint) DAG-CBOR messages and reads
one answer to each: a ``sets`` request, answered with the responder's replication sets
(``node.collections``: name, count, digest; at most ``MAX_SETS``), then, for each set both hold
whose digests differ, ``recon`` rounds naming the set (``p2p.reconcile``; a request without
``set`` means every record, as before sets) until no range differs, then ``get``
requests of at most ``MAX_GET`` binary CIDs, answered by ``records``
(``{"t": "records", "records": [{"block", "sig"}]}``, only the facts the responder holds). Every
record is verified like a gossip message, and must be one that was asked for, of the set
reconciled. A node holding named collections reconciles the base set and those only; one
holding every collection, every set the peer lists. A peer from before sets refuses ``sets``
(and counts it an offence): the initiator then reconciles everything on a new stream. ``blocks``
requests fetch other blocks by CID (batch manifests), each checked against its CID.

The responder (``SyncServer``) defends itself: a request must arrive within
``SYNC_IDLE_TIMEOUT`` seconds (whole, length prefix to last byte) and its answer must be taken
within as long, or the stream is reset; a peer holds at most ``MAX_STREAMS_PER_PEER`` sync
streams at once; reconciliation runs in worker threads (at most ``RECON_THREADS`` at a time),
never on the trio loop; ``recon`` answers keep to ``p2p.reconcile.answer_budget`` and
``records``/``blocks`` answers to the frame limit (what does not fit is omitted, as for facts
the responder lacks: the initiator asks again). A malformed or refused request (bad framing,
not DAG-CBOR, an unknown type, a recon request ``p2p.reconcile.check_request`` refuses or
whose ``set`` is not a collection name, too many streams) is answered with ``{"t": "error"}``,
the stream is closed, and the peer is reported to ``on_offence``; a peer that merely hangs up
or goes quiet is not.
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
from node.collections import RECORDS_SET, check_set_name, set_of
from node.errors import InvalidFact, KnowhubError
from node.ports import RecordSink
from node.records import SignedRecord
from p2p.bridge import TrioThread
from p2p.reconcile import FP_BYTES, ItemSet, RequestRefused, absorb, initial_request, respond
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
#: Sets listed in a ``sets`` answer at most (the records set first, then collections by name).
MAX_SETS = 257
#: Sets a responder keeps built (per version of its record set): all it lists, and everything.
_SET_CACHE = MAX_SETS + 1
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
        self._version: int | None = None
        self._cache: dict[str | None, ItemSet] = {}
        self._streams: Counter[ID] = Counter()
        self._limiter = trio.CapacityLimiter(RECON_THREADS)

    async def own_set(self, name: str | None = None) -> ItemSet:
        """Set ``name`` as this node holds it (None: every record), cached per version."""
        version = await trio.to_thread.run_sync(self._sink.set_version)
        if version != self._version:
            self._version, self._cache = version, {}
        cached = self._cache.get(name)
        if cached is None:
            items = await trio.to_thread.run_sync(self._sink.record_cids, name)
            cached = await trio.to_thread.run_sync(ItemSet, items, limiter=self._limiter)
            if len(self._cache) >= _SET_CACHE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[name] = cached
        return cached

    async def own_sets(self) -> list[dict[str, Any]]:
        """The ``sets`` answer's list: the records set, then the collections by name."""
        listed = []
        for name in (await trio.to_thread.run_sync(self._sink.sets))[:MAX_SETS]:
            items = await self.own_set(name)
            listed.append({"name": name, "count": len(items), "digest": items.fingerprint_all()})
        return listed

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
        if msg["t"] == "sets":
            listed = await self.own_sets()
            return await trio.to_thread.run_sync(encode_message, {"t": "sets", "sets": listed})
        if msg["t"] == "recon":
            own = await self.own_set(_set_name(msg))
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
    """Fetch every record of the sets this node holds that ``peer`` has and this node lacks;
    return how many were fetched.

    Hashing, fingerprints and signature checks run in worker threads, off the trio loop."""
    stream = await host.new_stream(peer, [SYNC_PROTOCOL])
    try:
        await write_message(stream, {"t": "sets"})
        response = await read_message(stream)
        if response is None or response["t"] == "error":  # a peer from before sets
            await stream.close()
            stream = await host.new_stream(peer, [SYNC_PROTOCOL])
            return await _sync_set(stream, peer, sink, deliver, None, None)
        if response["t"] != "sets":
            raise SyncError(f"expected sets, got {response['t']}")
        theirs = _their_sets(response)
        held = sink.held()
        fetched = 0
        for name, digest in theirs.items():
            if held.holds_set(name):
                fetched += await _sync_set(stream, peer, sink, deliver, name, digest)
        return fetched
    finally:
        await stream.close()


async def _sync_set(
    stream: INetStream,
    peer: ID,
    sink: RecordSink,
    deliver: Callable[[list[SignedRecord], str], Awaitable[int]],
    name: str | None,
    digest: bytes | None,
) -> int:
    """Reconcile set ``name`` (None: every record) with the peer and fetch what is missing;
    nothing to do when the peer's ``digest`` of it equals this node's."""
    cids = await trio.to_thread.run_sync(sink.record_cids, name)
    own = await trio.to_thread.run_sync(ItemSet, cids)
    if digest is not None and own.fingerprint_all() == digest:
        return 0
    request: dict[str, Any] | None = initial_request(own)
    missing: list[bytes] = []
    rounds = 0
    while request is not None:
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise SyncError(f"no agreement after {MAX_ROUNDS} rounds")
        await write_message(stream, request if name is None else {**request, "set": name})
        response = await _answer(stream, "recon")
        found, request = await trio.to_thread.run_sync(absorb, own, response)
        missing += found
    fetched = 0
    while missing:
        wanted, missing = missing[:MAX_GET], missing[MAX_GET:]
        await write_message(stream, {"t": "get", "cids": wanted})
        response = await _answer(stream, "records")
        facts = await trio.to_thread.run_sync(_verified, response, set(wanted), name)
        fetched += len(facts)
        if facts:
            await deliver(facts, peer.to_string())
            # an answer holds what fits in one frame: ask again for the rest
            got = {bytes(CID.decode(f.cid)) for f in facts}
            missing = [c for c in wanted if c not in got] + missing
    return fetched


def _set_name(msg: dict[str, Any]) -> str | None:
    """The set a recon request names (None: every record); ``SyncError`` if not a name."""
    if "set" not in msg:
        return None
    try:
        return check_set_name(msg["set"])
    except InvalidFact as exc:
        raise SyncError(f"set: {exc.message}") from exc


def _their_sets(response: dict[str, Any]) -> dict[str, bytes]:
    """A ``sets`` answer as name -> digest, checked."""
    listed = response.get("sets")
    if not isinstance(listed, list) or len(listed) > MAX_SETS:
        raise SyncError(f"sets must be a list of at most {MAX_SETS}")
    out: dict[str, bytes] = {RECORDS_SET: b""}  # reconciled even if the peer left it out
    for entry in listed:
        if not isinstance(entry, dict) or set(entry) != {"name", "count", "digest"}:
            raise SyncError("a set is a map with exactly name, count and digest")
        digest = entry["digest"]
        if not isinstance(digest, bytes) or len(digest) != FP_BYTES:
            raise SyncError(f"a set digest is {FP_BYTES} bytes")
        out[_set_name({"set": entry["name"]}) or RECORDS_SET] = digest
    return out


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


def _verified(
    response: dict[str, Any], wanted: set[bytes], set_name: str | None = None
) -> list[SignedRecord]:
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
        if set_name is not None and set_of(fact) != set_name:
            raise SyncError(f"peer listed {fact.cid} in set {set_name!r}: it is not of that set")
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
