"""The tombstone record kind: a contributor takes back one of their facts.

A tombstone is the DAG-CBOR map ``{"v": 1, "kind": "tombstone", "revokes": <fact CID string>,
"contributor": <EIP-55 address>}`` plus ``"reason": <string>`` when one is given (at most
``MAX_REASON_BYTES`` of UTF-8, with a visible character). It is signed like a fact: EIP-191
``personal_sign`` of its own CID string, by ``contributor``. ``revokes`` is a CID *string*,
not an IPLD link, on purpose: a DAG walk (``ipfs dag export``, pinning) of a tombstone must not
pull the erased fact back.

What a tombstone does (``node.revocation``) is the node's business; what one *is* lives
here: the record, its validation and its row in the record-kind table (``node.kinds``).
Invariant, as for every kind: only the canonical encoding decodes, so a tombstone's CID names
one revocation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dag_cbor
from eth_utils.address import is_checksum_address

from node.cid import dag_cbor_cid
from node.errors import InvalidFact
from node.facts import check_fact_cid, has_visible_character
from node.limits import MAX_REASON_BYTES
from node.records import RecordKind

TOMBSTONE_KIND_NAME = "tombstone"
TOMBSTONE_VERSION = 1
_KEYS = frozenset({"v", "kind", "revokes", "contributor"})
MAX_TOMBSTONE_BLOCK = MAX_REASON_BYTES + 512


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A validated tombstone. Build it with :func:`make_tombstone`."""

    revokes: str
    contributor: str
    reason: str | None
    block: bytes
    cid: str

    @property
    def kind(self) -> str:
        return TOMBSTONE_KIND_NAME

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": TOMBSTONE_VERSION,
            "kind": TOMBSTONE_KIND_NAME,
            "revokes": self.revokes,
            "contributor": self.contributor,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def make_tombstone(revokes: Any, contributor: Any, reason: Any = None) -> Tombstone:
    """Validate the parts of a tombstone and build its canonical record; ``InvalidFact``
    naming the field otherwise. ``revokes`` may be any multibase form of a CIDv1 dag-cbor;
    the record holds its base32 string."""
    target = check_fact_cid(revokes, "revokes")
    if not isinstance(contributor, str) or not is_checksum_address(contributor):
        raise InvalidFact(
            "contributor must be the checksummed 0x address (EIP-55) of the fact's contributor",
            field="contributor",
        )
    if reason is not None:
        _check_reason(reason)
    record: dict[str, Any] = {
        "v": TOMBSTONE_VERSION,
        "kind": TOMBSTONE_KIND_NAME,
        "revokes": target,
        "contributor": contributor,
    }
    if reason is not None:
        record["reason"] = reason
    block = dag_cbor.encode(record)
    return Tombstone(target, contributor, reason, block, dag_cbor_cid(block))


def _check_reason(reason: Any) -> None:
    if not isinstance(reason, str):
        raise InvalidFact("reason must be a string", field="reason")
    try:
        size = len(reason.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidFact("reason is not valid Unicode (lone surrogate)", field="reason") from exc
    if size > MAX_REASON_BYTES:
        raise InvalidFact(
            f"reason is {size} bytes of UTF-8, over the limit of {MAX_REASON_BYTES}",
            field="reason",
        )
    if not has_visible_character(reason):
        raise InvalidFact("reason must hold a visible character (or be left out)", field="reason")


def tombstone_from_map(record: Mapping[str, Any], block: bytes) -> Tombstone:
    """A tombstone from its decoded map and block (its row of ``node.kinds``)."""
    keys = set(record)
    if keys not in (_KEYS, _KEYS | {"reason"}):
        raise InvalidFact(
            "tombstone must be a map with exactly v, kind, revokes, contributor (and reason)"
        )
    if type(record["v"]) is not int or record["v"] != TOMBSTONE_VERSION:
        raise InvalidFact(f"unsupported tombstone version {record['v']!r}", field="v")
    tombstone = make_tombstone(record["revokes"], record["contributor"], record.get("reason"))
    if tombstone.block != block or tombstone.revokes != record["revokes"]:
        raise InvalidFact("tombstone block is not in canonical DAG-CBOR form")
    return tombstone


def _subject(tombstone: Tombstone) -> str:
    return tombstone.revokes


TOMBSTONE = RecordKind(TOMBSTONE_KIND_NAME, tombstone_from_map, MAX_TOMBSTONE_BLOCK, _subject)
