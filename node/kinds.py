"""The record-kind table: which kinds of signed record this node reads, and how.

Every path that takes records from elsewhere (gossip envelopes, sync answers, the chain
follower's fetches, CAR snapshots, blocks found at recovery) decodes them here and nowhere
else: :func:`decode_record` picks the kind's row by the record's ``kind`` key (a map without
one is a fact, see ``node.facts``) and :func:`verify_record` adds the signature check, once.
Adding a kind is a module that defines its ``RecordKind`` and one line in ``KINDS``; the
gossip, sync, anchoring and CAR code carry records of every kind unchanged.

Invariant: a block decodes to at most one kind, and only a canonical block decodes at all
(each kind re-encodes what it validated and compares), so a record's CID names one meaning.
"""

from __future__ import annotations

from types import MappingProxyType

from node.attestation import ATTESTATION
from node.errors import InvalidFact
from node.facts import FACT, FACT_KIND_NAME
from node.records import RecordBody, RecordKind, SignedRecord, decode_map
from node.signing import check_signature, normalize_signature
from node.tombstone import TOMBSTONE

#: The table: one row per kind this node reads.
KINDS: MappingProxyType[str, RecordKind] = MappingProxyType(
    {
        FACT.name: FACT,
        TOMBSTONE.name: TOMBSTONE,
        ATTESTATION.name: ATTESTATION,
    }
)

#: The largest block of any kind: the first bound on bytes from elsewhere.
MAX_RECORD_BLOCK = max(kind.max_block for kind in KINDS.values())


def kind_of(block: bytes) -> RecordKind:
    """The row of the table a block's record names (decoding it once for that)."""
    return _kind(decode_map(block, MAX_RECORD_BLOCK, "record"))


def _kind(obj: dict[str, object]) -> RecordKind:
    name = obj.get("kind", FACT_KIND_NAME)
    if name == FACT_KIND_NAME and "kind" in obj:
        raise InvalidFact("a fact record has no kind key (a map without one is a fact)")
    if not isinstance(name, str) or name not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise InvalidFact(f"unknown record kind {name!r} (this node reads: {known})", field="kind")
    return KINDS[name]


def decode_record(block: bytes) -> RecordBody:
    """A validated record of any kind from its canonical block; ``InvalidFact`` with the
    reason otherwise."""
    obj = decode_map(block, MAX_RECORD_BLOCK, "record")
    kind = _kind(obj)
    if len(block) > kind.max_block:
        raise InvalidFact(f"{kind.name} block is {len(block)} bytes, over {kind.max_block}")
    return kind.decode(obj, block)


def verify_record(block: bytes, signature: str | bytes) -> SignedRecord:
    """A record from elsewhere, checked completely: canonical block of a known kind, a
    contributor, and that contributor's signature of its CID (``0x`` hex or 65 raw bytes).

    Raises ``InvalidFact``, ``InvalidSignature`` or ``SignatureMismatch`` with the reason.
    """
    return with_signature(decode_record(block), signature)


def with_signature(body: RecordBody, signature: str | bytes) -> SignedRecord:
    """A decoded record and its contributor's signature, checked (the second half of
    ``verify_record``)."""
    if body.contributor is None:
        raise InvalidFact(
            f"{body.kind} {body.cid} names no contributor to check a signature against",
            field="contributor",
        )
    hex_signature = signature if isinstance(signature, str) else "0x" + signature.hex()
    canonical = normalize_signature(hex_signature)
    check_signature(body.cid, body.contributor, canonical)
    return SignedRecord(body, canonical)


def subject_of(record: RecordBody) -> str | None:
    """The CID a record is about (None for kinds about nothing, like facts)."""
    return KINDS[record.kind].subject(record)
