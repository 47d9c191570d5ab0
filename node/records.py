"""Signed records: the one shape every kind of record (fact, tombstone, ...) travels in.

A record is a canonical DAG-CBOR map whose CID is computed from its bytes; a **signed record**
is a record with its contributor's EIP-191 signature of that CID string (``node.signing``).
The record's ``kind`` says how to read it: a map with ``"kind"`` names it, a map without one
is a fact (fact records of version 1 predate kinds; their bytes, and so their CIDs, stay as
they are).

This module owns the two types every layer passes around:

- :class:`RecordBody`, what each kind's decoded record offers (its kind, CID, block and
  contributor);
- :class:`SignedRecord`, a body and the signature that was checked against it.

Invariant: a ``SignedRecord`` exists only after its signature was checked once against its
body's contributor (``node.kinds.verify_record`` for bytes from elsewhere, ``sign_record`` for
the operator's own, ``node.submissions`` for a REST submission). Nothing downstream checks
again: the type is the proof.

Each kind registers a :class:`RecordKind` in ``node.kinds`` (the table); this module knows no
kind by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import dag_cbor

from node.errors import InvalidFact
from node.signing import SigningKey


class RecordBody(Protocol):
    """A decoded, validated record of some kind."""

    @property
    def kind(self) -> str: ...

    @property
    def cid(self) -> str: ...

    @property
    def block(self) -> bytes: ...

    @property
    def contributor(self) -> str | None: ...

    def record(self) -> dict[str, Any]:
        """The record as plain JSON-compatible data."""
        ...


@dataclass(frozen=True, slots=True)
class RecordKind:
    """One row of the record-kind table.

    ``decode`` turns a decoded DAG-CBOR map (already known to name this kind) and its block
    into the kind's body, raising ``InvalidFact`` with the reason; it must check that the
    block is the canonical encoding. ``max_block`` bounds the block before it is decoded.
    ``subject`` names the CID a record of this kind is about (a tombstone: the fact it
    revokes), or None: the catalog indexes records by it.
    """

    name: str
    decode: Callable[[Mapping[str, Any], bytes], RecordBody]
    max_block: int
    subject: Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class SignedRecord:
    """A record and its contributor's signature (``0x`` hex, canonical), checked."""

    body: RecordBody
    signature: str

    @property
    def cid(self) -> str:
        return self.body.cid

    @property
    def kind(self) -> str:
        return self.body.kind

    @property
    def block(self) -> bytes:
        return self.body.block

    @property
    def contributor(self) -> str | None:
        return self.body.contributor

    @property
    def signature_bytes(self) -> bytes:
        return bytes.fromhex(self.signature[2:])


def decode_map(block: bytes, max_bytes: int, what: str) -> dict[str, Any]:
    """A record block's DAG-CBOR map; ``InvalidFact`` when over ``max_bytes``, not DAG-CBOR or
    not a map. Canonical form is the kind's to check (it re-encodes what it validated)."""
    if not isinstance(block, bytes):
        raise InvalidFact(f"{what} block must be bytes")
    if len(block) > max_bytes:
        raise InvalidFact(f"{what} block is {len(block)} bytes, over the limit of {max_bytes}")
    try:
        obj = dag_cbor.decode(block)
    except Exception as exc:  # dag_cbor raises several unrelated types for bad input
        raise InvalidFact(f"{what} block is not valid DAG-CBOR: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidFact(f"{what} block must be a DAG-CBOR map")
    return obj


def sign_record(body: RecordBody, key: SigningKey) -> SignedRecord:
    """The operator's (or a test's) signature of a record whose contributor is ``key``."""
    if body.contributor != key.address:
        raise ValueError(f"record contributor {body.contributor} is not the key {key.address}")
    return SignedRecord(body, key.sign_cid(body.cid))
