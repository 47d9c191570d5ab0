"""Provenance: anchoring batches, per-fact proofs, and checking a fact's provenance bundle.

A *bundle* is what ``GET /v1/facts/{cid}/provenance`` returns: the record, the contributor's
signature, and (once anchored) the Merkle root, the proof, the manifest CID and where the root
was anchored. :func:`check_bundle` verifies one without trusting whoever produced it: the CID is
recomputed from the record, the signature is recovered, the proof is folded, and the root's
anchor is read from the chain through a :class:`RegistryReader` the caller chose.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dag_cbor
from multiformats import CID

from node.errors import InvalidInput
from node.kinds import decode_record
from node.merkle import verify_proof
from node.records import RecordBody
from node.signing import recover_signer


class BatchStatus(enum.StrEnum):
    SEALED = "sealed"  # root and proofs fixed, no transaction yet (or one to redo)
    SENT = "sent"  # a signed transaction is recorded and was (or is being) broadcast
    ANCHORED = "anchored"  # the root is in the registry


@dataclass(slots=True)
class Batch:
    id: int
    root: bytes
    manifest_cid: str
    count: int
    created_at: float
    status: BatchStatus = BatchStatus.SEALED
    nonce: int | None = None
    tx_hash: str | None = None
    raw_tx: bytes | None = field(default=None, repr=False)
    sent_at: float | None = None
    attempts: int = 0
    chain_id: int | None = None
    registry: str | None = None
    block_number: int | None = None
    anchored_at: int | None = None
    submitter: str | None = None


@dataclass(frozen=True, slots=True)
class Provenance:
    cid: str
    record: dict[str, Any]
    contributor: str | None
    signature: str | None
    batch: Batch | None
    proof: list[bytes]
    #: The record's DAG-CBOR block (``record`` decoded): what a proof-carrying hit ships.
    block: bytes = field(repr=False)

    @property
    def status(self) -> str:
        anchored = self.batch is not None and self.batch.status is BatchStatus.ANCHORED
        return "anchored" if anchored else "pending"


class RegistryReader(Protocol):
    """What verification needs from the chain: read-only calls to the registry."""

    @property
    def chain_id(self) -> int: ...

    @property
    def registry(self) -> str: ...

    def get_anchor(self, root: bytes) -> Any: ...

    def verify_fact(self, cid_bytes: bytes, proof: Sequence[bytes], root: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def hex32(value: object, name: str) -> bytes:
    """32 bytes from ``0x`` and 64 hex digits (a root or a proof step); ``InvalidInput``
    otherwise (``bytes.fromhex`` alone would skip whitespace and return fewer bytes)."""
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise InvalidInput(f"{name} must be 0x followed by 64 hex digits", field=name)
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise InvalidInput(f"{name} is not hex", field=name) from exc
    if len(raw) != 32:
        raise InvalidInput(f"{name} must be 0x followed by 64 hex digits", field=name)
    return raw


def record_of(record: Mapping[str, Any]) -> RecordBody:
    """A record of any kind from its JSON form (as ``/provenance`` shows it): encoded as
    DAG-CBOR and decoded by the kind table, so its CID is recomputed, never trusted."""
    try:
        block = dag_cbor.encode(dict(record))
    except Exception as exc:  # dag_cbor refuses values it cannot encode with various types
        raise InvalidInput(f"record cannot be encoded as DAG-CBOR: {exc}") from exc
    return decode_record(block)


def check_bundle(bundle: Mapping[str, Any], chain: RegistryReader | None) -> list[Check]:
    """Every check of a provenance bundle, in order; all ``ok`` means the fact is proven.

    With ``chain`` None only the offline checks run (CID, signature, proof).
    """
    checks: list[Check] = []
    cid = bundle.get("cid")
    record = bundle.get("record")
    if not isinstance(cid, str) or not isinstance(record, Mapping):
        return [Check("bundle", False, "bundle needs 'cid' (string) and 'record' (object)")]
    try:
        fact = record_of(record)
        checks.append(
            Check("cid", fact.cid == cid, f"record hashes to {fact.cid}, bundle says {cid}")
        )
    except InvalidInput as exc:
        return [Check("record", False, f"record is not a valid record: {exc.message}")]
    contributor = bundle.get("contributor")
    checks.append(
        Check(
            "contributor",
            contributor == fact.contributor,
            f"record contributor {fact.contributor}, bundle says {contributor}",
        )
    )
    signature = bundle.get("signature")
    if fact.contributor is None or signature is None:
        checks.append(Check("signature", False, "fact has no contributor signature"))
    else:
        try:
            signer = recover_signer(cid, signature)
            checks.append(
                Check("signature", signer == fact.contributor, f"signed by {signer} (EIP-191)")
            )
        except InvalidInput as exc:
            checks.append(Check("signature", False, exc.message))
    if bundle.get("status") != "anchored":
        checks.append(Check("anchor", False, "fact is not anchored yet (status pending)"))
        return checks
    try:
        root = hex32(bundle.get("root"), "root")
        proof = [hex32(p, "proof") for p in bundle.get("proof") or []]
        cid_bytes = bytes(CID.decode(cid))
    except (InvalidInput, ValueError, KeyError) as exc:
        checks.append(Check("proof", False, f"malformed proof or root: {exc}"))
        return checks
    checks.append(
        Check(
            "proof",
            verify_proof(cid_bytes, proof, root),
            f"{len(proof)}-step Merkle proof against root 0x{root.hex()}",
        )
    )
    if chain is None:
        return checks
    checks.extend(_chain_checks(bundle, chain, cid_bytes, proof, root))
    return checks


def _chain_checks(
    bundle: Mapping[str, Any],
    chain: RegistryReader,
    cid_bytes: bytes,
    proof: list[bytes],
    root: bytes,
) -> list[Check]:
    checks = [
        Check(
            "chain_id",
            bundle.get("chain_id") == chain.chain_id,
            f"chain {chain.chain_id}, bundle says {bundle.get('chain_id')}",
        )
    ]
    anchor = chain.get_anchor(root)
    if anchor is None:
        checks.append(Check("anchored", False, f"root not anchored in registry {chain.registry}"))
        return checks
    checks.append(
        Check(
            "anchored",
            True,
            f"root anchored at block {anchor.block_number} (unix time {anchor.timestamp}) "
            f"by {anchor.submitter}",
        )
    )
    checks.append(
        Check(
            "manifest",
            anchor.manifest_cid == bundle.get("manifest_cid"),
            f"on-chain manifest {anchor.manifest_cid}, bundle says {bundle.get('manifest_cid')}",
        )
    )
    checks.append(
        Check(
            "block",
            anchor.block_number == bundle.get("block_number"),
            f"on-chain block {anchor.block_number}, bundle says {bundle.get('block_number')}",
        )
    )
    on_chain = chain.verify_fact(cid_bytes, proof, root)
    checks.append(Check("verifyFact", on_chain, f"registry.verifyFact returned {on_chain}"))
    return checks
