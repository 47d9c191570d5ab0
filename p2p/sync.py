"""``/knowhub/sync/1.0.0``: catch up with a peer by reconciling fact CID sets, then fetching
and verifying what is missing.

On one stream the initiator sends length-prefixed (unsigned varint) DAG-CBOR messages and reads
one answer to each: ``recon`` rounds (``p2p.reconcile``) until no range differs, then ``get``
requests of at most ``MAX_GET`` binary CIDs, answered by ``records``
(``{"t": "records", "records": [{"block", "sig"}]}``, only the facts the responder holds). Every
record is verified like a gossip message, and must be one that was asked for. ``blocks``
requests fetch other blocks by CID (batch manifests), each checked against its CID.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import dag_cbor
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from multiformats import CID

from node.cid import cid_from_bytes, cid_to_bytes, verify_block
from node.ports import FactSink
from p2p.bridge import TrioThread
from p2p.reconcile import ItemSet, absorb, initial_request, respond
from p2p.wire import (
    MAX_SYNC_MESSAGE_BYTES,
    InvalidEnvelope,
    VerifiedFact,
    encode_varint,
    verify_record,
)

log = logging.getLogger(__name__)

SYNC_PROTOCOL = TProtocol("/knowhub/sync/1.0.0")
MAX_GET = 256
MAX_ROUNDS = 64


class SyncError(Exception):
    pass


async def _read_exactly(stream: INetStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise SyncError("stream closed mid-message")
        buf += chunk
    return bytes(buf)


async def read_message(stream: INetStream) -> dict[str, Any] | None:
    """The next message, or None at a clean end of stream."""
    size = shift = 0
    for i in range(10):
        byte = await stream.read(1)
        if not byte:
            if i == 0:
                return None
            raise SyncError("stream closed inside a length prefix")
        size |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    else:
        raise SyncError("length prefix too long")
    if size > MAX_SYNC_MESSAGE_BYTES:
        raise SyncError(f"message of {size} bytes is over {MAX_SYNC_MESSAGE_BYTES}")
    try:
        obj = dag_cbor.decode(await _read_exactly(stream, size))
    except SyncError:
        raise
    except Exception as exc:  # dag_cbor raises several unrelated types for bad input
        raise SyncError(f"message is not DAG-CBOR: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise SyncError("message must be a map with a string t")
    return obj


def encode_message(obj: dict[str, Any]) -> bytes:
    """A sync message as framed on the stream: unsigned varint length, then DAG-CBOR."""
    data = dag_cbor.encode(obj)
    return encode_varint(len(data)) + data


async def write_message(stream: INetStream, obj: dict[str, Any]) -> None:
    await stream.write(encode_message(obj))


class SyncServer:
    """Answers sync requests from the node's catalog (read in worker threads)."""

    def __init__(self, sink: FactSink, bridge: TrioThread) -> None:
        self._sink = sink
        self._bridge = bridge
        self._cache: tuple[int, ItemSet] | None = None

    async def own_set(self) -> ItemSet:
        count = await trio.to_thread.run_sync(self._sink.fact_count)
        if self._cache is None or self._cache[0] != count:
            items = await trio.to_thread.run_sync(self._sink.fact_cids)
            self._cache = (count, await trio.to_thread.run_sync(ItemSet, items))
        return self._cache[1]

    async def handle(self, stream: INetStream) -> None:
        try:
            while (msg := await read_message(stream)) is not None:
                if msg["t"] == "recon":
                    own = await self.own_set()
                    await write_message(stream, respond(own, msg))
                elif msg["t"] == "get":
                    cids = _cid_list(msg)
                    records = await trio.to_thread.run_sync(self._sink.signed_records, cids)
                    await write_message(
                        stream,
                        {
                            "t": "records",
                            "records": [
                                {"block": block, "sig": bytes.fromhex(sig[2:])}
                                for block, sig in records
                            ],
                        },
                    )
                elif msg["t"] == "blocks":
                    cids = _cid_list(msg)
                    blocks = []
                    for cid in cids:
                        block = await self._bridge.to_asyncio(
                            self._sink.get_block(cid_from_bytes(cid))
                        )
                        if block is not None:
                            blocks.append(block)
                    await write_message(stream, {"t": "blocks", "blocks": blocks})
                else:
                    raise SyncError(f"unknown message type {msg['t']!r}")
        except (SyncError, ValueError) as exc:
            log.warning("sync request refused: %s", exc)
            await write_message(stream, {"t": "error", "message": str(exc)[:200]})
        except Exception:
            log.debug("sync stream failed", exc_info=True)
        finally:
            await stream.close()


async def sync_with(
    host: IHost,
    peer: ID,
    sink: FactSink,
    deliver: Callable[[list[VerifiedFact], str], Awaitable[int]],
) -> int:
    """Fetch every fact ``peer`` has and this node lacks; return how many were fetched."""
    stream = await host.new_stream(peer, [SYNC_PROTOCOL])
    try:
        own = ItemSet(await trio.to_thread.run_sync(sink.fact_cids))
        request: dict[str, Any] | None = initial_request(own)
        missing: list[bytes] = []
        rounds = 0
        while request is not None:
            rounds += 1
            if rounds > MAX_ROUNDS:
                raise SyncError(f"no agreement after {MAX_ROUNDS} rounds")
            await write_message(stream, request)
            response = await _answer(stream, "recon")
            found, request = absorb(own, response)
            missing += found
        fetched = 0
        for start in range(0, len(missing), MAX_GET):
            wanted = missing[start : start + MAX_GET]
            await write_message(stream, {"t": "get", "cids": wanted})
            response = await _answer(stream, "records")
            facts = _verified(response, set(wanted))
            fetched += len(facts)
            if facts:
                await deliver(facts, peer.to_string())
        return fetched
    finally:
        await stream.close()


def _cid_list(msg: dict[str, Any]) -> list[bytes]:
    cids = msg.get("cids")
    if not isinstance(cids, list) or len(cids) > MAX_GET:
        raise SyncError(f"{msg['t']} needs a list of at most {MAX_GET} CIDs")
    if not all(isinstance(c, bytes) for c in cids):
        raise SyncError("CIDs are byte strings")
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


async def fetch_facts_from(host: IHost, peer: ID, cids: list[str]) -> list[VerifiedFact]:
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


def _verified(response: dict[str, Any], wanted: set[bytes]) -> list[VerifiedFact]:
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
        if bytes(CID.decode(fact.fact.cid)) not in wanted:
            raise SyncError(f"peer sent {fact.fact.cid}, which was not asked for")
        out.append(fact)
    return out
