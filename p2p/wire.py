"""The wire format of ``/knowhub/facts/1`` gossip and the ``/knowhub/sync/1.0.0`` protocol.

Everything on the wire is DAG-CBOR (docs/protocol.md specifies it with test vectors):

* a **record envelope** (gossip message data): ``{"v": 1, "facts": [{"block": bytes,
  "sig": bytes}, ...]}``, 1-64 signed records of any kind (``node.kinds``; the key keeps its
  first name, ``facts``, so envelopes of facts are what they always were), at most
  ``MAX_ENVELOPE_BYTES``. ``block`` is the record's canonical DAG-CBOR (its CID is computed,
  never sent), ``sig`` the contributor's 65-byte EIP-191 signature of the CID string. One bad
  record rejects the whole envelope. ``v`` is the
  integer 1: ``1.0`` (a CBOR float) and ``true`` are refused (``is_int``), though Python finds
  them equal to 1.
* **sync messages**, length-prefixed (unsigned varint) on a stream, see ``p2p.reconcile``.

Validation is pure: these functions raise ``InvalidEnvelope`` with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeGuard

import dag_cbor

from node.errors import InvalidInput, KnowhubError
from node.kinds import verify_record as verify_signed
from node.records import SignedRecord

ENVELOPE_VERSION = 1
MAX_FACTS_PER_ENVELOPE = 64
MAX_ENVELOPE_BYTES = 512 * 1024
MAX_SYNC_MESSAGE_BYTES = 4 * 1024 * 1024
#: A CID (or model CID) given as a string in a message is at most this long.
MAX_WIRE_CID_CHARS = 128
SIGNATURE_BYTES = 65


def is_int(value: object) -> TypeGuard[int]:
    """An integer as the protocol means it: a CBOR integer, never a bool (``True == 1``) nor a
    float (``1.0 == 1``; the protocol has no floats), whatever Python's equality says."""
    return type(value) is int


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite number as a message that has them means it (``/knowhub/query/1``): a CBOR
    integer or float, never a bool, NaN nor an infinity."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class InvalidEnvelope(InvalidInput):
    code = "invalid_envelope"


class RawRecord(NamedTuple):
    """A record as bytes on the wire, not checked: what a sender puts in an envelope (and what
    tests forge). Receivers turn it into a ``SignedRecord`` with ``verify_record``."""

    block: bytes
    signature: bytes


def raw(record: SignedRecord) -> RawRecord:
    return RawRecord(record.block, record.signature_bytes)


def encode_envelope(records: Sequence[RawRecord]) -> bytes:
    return dag_cbor.encode(
        {
            "v": ENVELOPE_VERSION,
            "facts": [{"block": r.block, "sig": r.signature} for r in records],
        }
    )


def verify_record(block: Any, signature: Any) -> SignedRecord:
    """A record from a peer, checked completely (``node.kinds.verify_record``): a canonical
    record of a known kind, its contributor, and the contributor's signature."""
    if not isinstance(block, bytes) or not isinstance(signature, bytes):
        raise InvalidEnvelope("block and sig must be byte strings")
    if len(signature) != SIGNATURE_BYTES:
        raise InvalidEnvelope(f"sig must be {SIGNATURE_BYTES} bytes, got {len(signature)}")
    try:
        return verify_signed(block, signature)
    except KnowhubError as exc:
        raise InvalidEnvelope(f"bad record: {exc.message}") from exc


def decode_envelope(
    data: bytes, verify: Callable[[Any, Any], SignedRecord] = verify_record
) -> list[SignedRecord]:
    """Decode and verify a gossip envelope; ``InvalidEnvelope`` on the first problem.

    ``verify`` checks one record (``verify_record`` or one that remembers its answers)."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise InvalidEnvelope(f"envelope is {len(data)} bytes, over {MAX_ENVELOPE_BYTES}")
    try:
        obj = dag_cbor.decode(data)
    except Exception as exc:  # dag_cbor raises several unrelated types for bad input
        raise InvalidEnvelope(f"envelope is not DAG-CBOR: {exc}") from exc
    if not isinstance(obj, dict) or set(obj) != {"v", "facts"}:
        raise InvalidEnvelope("envelope must be a map with exactly v and facts")
    if not is_int(obj["v"]) or obj["v"] != ENVELOPE_VERSION:
        raise InvalidEnvelope(f"unsupported envelope version {obj['v']!r} (the integer 1)")
    facts = obj["facts"]
    if not isinstance(facts, list) or not 1 <= len(facts) <= MAX_FACTS_PER_ENVELOPE:
        raise InvalidEnvelope(f"facts must be a list of 1-{MAX_FACTS_PER_ENVELOPE} records")
    out: list[SignedRecord] = []
    seen: set[str] = set()
    for item in facts:
        if not isinstance(item, dict) or set(item) != {"block", "sig"}:
            raise InvalidEnvelope("each fact must be a map with exactly block and sig")
        verified = verify(item["block"], item["sig"])
        if verified.cid in seen:
            raise InvalidEnvelope(f"record {verified.cid} appears twice")
        seen.add(verified.cid)
        out.append(verified)
    return out


def pack_envelopes(records: Sequence[SignedRecord]) -> list[bytes]:
    """Split records into as few envelopes as the count and size limits allow."""
    out: list[bytes] = []
    chunk: list[RawRecord] = []
    size = 16
    for record in map(raw, records):
        item = len(record.block) + len(record.signature) + 16
        if chunk and (len(chunk) == MAX_FACTS_PER_ENVELOPE or size + item > MAX_ENVELOPE_BYTES):
            out.append(encode_envelope(chunk))
            chunk, size = [], 16
        chunk.append(record)
        size += item
    if chunk:
        out.append(encode_envelope(chunk))
    return out


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


ANCHOR_KEYS = frozenset({"v", "chain_id", "registry", "root", "manifest", "tx", "block"})


@dataclass(frozen=True, slots=True)
class AnchorNotice:
    """``/knowhub/anchors/1``: a node anchored a batch. A hint only: receivers read the
    anchor from the chain themselves and never trust the notice."""

    chain_id: int
    registry: bytes
    root: bytes
    manifest_cid: str
    tx_hash: bytes
    block_number: int


def encode_anchor_notice(notice: AnchorNotice) -> bytes:
    return dag_cbor.encode(
        {
            "v": 1,
            "chain_id": notice.chain_id,
            "registry": notice.registry,
            "root": notice.root,
            "manifest": notice.manifest_cid,
            "tx": notice.tx_hash,
            "block": notice.block_number,
        }
    )


def decode_anchor_notice(data: bytes) -> AnchorNotice:
    if len(data) > 1024:
        raise InvalidEnvelope("anchor notice over 1 KiB")
    try:
        obj: Any = dag_cbor.decode(data)
    except Exception as exc:  # dag_cbor raises several unrelated types for bad input
        raise InvalidEnvelope(f"anchor notice is not DAG-CBOR: {exc}") from exc
    if not isinstance(obj, dict) or set(obj) != ANCHOR_KEYS:
        raise InvalidEnvelope(f"anchor notice must be a map with exactly {sorted(ANCHOR_KEYS)}")
    if not is_int(obj["v"]) or obj["v"] != 1:
        raise InvalidEnvelope(f"unsupported anchor notice version {obj['v']!r} (the integer 1)")
    ints = (obj["chain_id"], obj["block"])
    if not all(is_int(i) and 0 <= i < 2**63 for i in ints):
        raise InvalidEnvelope("chain_id and block must be non-negative integers")
    sizes = {"registry": 20, "root": 32, "tx": 32}
    for key, size in sizes.items():
        if not isinstance(obj[key], bytes) or len(obj[key]) != size:
            raise InvalidEnvelope(f"{key} must be {size} bytes")
    if not isinstance(obj["manifest"], str) or not obj["manifest"].startswith("bafy"):
        raise InvalidEnvelope("manifest must be a CIDv1 dag-cbor string")
    return AnchorNotice(
        obj["chain_id"], obj["registry"], obj["root"], obj["manifest"], obj["tx"], obj["block"]
    )
