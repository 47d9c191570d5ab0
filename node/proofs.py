"""Proof-carrying hits: what a node attaches to a hit, and the offline check of one.

A hit of ``POST /v1/query`` with ``"proofs": true`` carries a ``proof`` object (built by
``hit_proof_json``, served by the API and MCP): the record block (base64 DAG-CBOR), the
contributor's signature, the revocation state the node knows and, for an anchored fact, the
Merkle root, the proof and where the root was anchored. ``check_hit`` verifies it with nothing
but a set of anchored roots read from the chain (``node.roots.RootCache``): no request to any
node.

Checks, all run (a failed hit lists every reason): the CID is the sha2-256 DAG-CBOR hash of the
block; the block is a valid fact record; the hit's text, metadata and contributor (those it
shows) equal the record's; the signature recovers to the record's contributor (EIP-191 over the
CID); no tombstone; then, for an anchored hit, the anchor names the cache's chain and registry,
the proof folds from the fact's leaf to the root, the root is in the cache, and the block, the
manifest and the transaction the hit names are the ones the chain's event gives. A hit whose
checks pass but whose fact is not anchored yet is ``pending``, never ``verified``.

Pure: no I/O; the caller refreshes the cache (``ResultVerifier`` in ``api.proof_check``).
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from node.cid import canonical_cid_string, cid_to_bytes, dag_cbor_cid
from node.errors import InvalidInput
from node.facts import FACT_KIND_NAME
from node.kinds import decode_record
from node.merkle import verify_proof
from node.provenance import BatchStatus, Provenance, hex32
from node.roots import KnownRoot
from node.signing import recover_signer

#: A proof longer than this would need a batch of more than 2^64 facts: refused unread.
MAX_PROOF_STEPS = 64


class Verdict(enum.StrEnum):
    VERIFIED = "verified"
    PENDING = "pending"  # every check passed, but the fact is not anchored yet
    FAILED = "failed"


class RootLookup(Protocol):
    """The anchored roots a hit is checked against (``node.roots.RootCache``)."""

    chain_id: int
    registry: str

    def get(self, root: bytes) -> KnownRoot | None: ...


@dataclass(frozen=True, slots=True)
class HitCheck:
    cid: str
    verdict: Verdict
    #: Why the hit failed or is pending (empty when verified).
    reasons: tuple[str, ...]
    #: The address the signature recovers to, when it does.
    signer: str | None = None
    #: The block the chain says anchored the hit's root (verified hits).
    block_number: int | None = None


@dataclass(frozen=True, slots=True)
class HitProof:
    """What the node attaches to a hit: its provenance and the tombstone it holds, if any (a
    tombstone erases its fact, so a served hit normally has none)."""

    provenance: Provenance
    tombstone: str | None = None


def hit_proof_json(proof: HitProof) -> dict[str, Any]:
    """The wire form of a hit's proof (one home: REST, MCP and the lean answer use it)."""
    p = proof.provenance
    batch = p.batch if p.batch is not None and p.batch.status is BatchStatus.ANCHORED else None
    anchor = None
    if batch is not None:
        anchor = {
            "chain_id": batch.chain_id,
            "registry": batch.registry,
            "block_number": batch.block_number,
            "tx_hash": batch.tx_hash,
            "manifest_cid": batch.manifest_cid,
            "anchored_at": batch.anchored_at,
        }
    return {
        "block": base64.b64encode(p.block).decode("ascii"),
        "signature": p.signature,
        "status": "anchored" if batch is not None else "pending",
        "root": None if batch is None else "0x" + batch.root.hex(),
        "merkle_proof": [] if batch is None else ["0x" + h.hex() for h in p.proof],
        "anchor": anchor,
        "tombstone": proof.tombstone,
    }


def hex32_or_none(value: object) -> bytes | None:
    """32 bytes from a 0x hex string, or None for anything else."""
    try:
        return hex32(value, "hash")
    except InvalidInput:
        return None


def _record_checks(hit: Mapping[str, Any], cid: str, block: bytes) -> tuple[list[str], Any]:
    """The block against the CID and the hit's shown fields; (reasons, decoded record)."""
    reasons = []
    hashed = dag_cbor_cid(block)
    if hashed != cid:
        reasons.append(f"block hashes to {hashed}, not to the hit's CID {cid}")
    try:
        record = decode_record(block)
    except InvalidInput as exc:
        return [*reasons, f"block is not a valid record: {exc.message}"], None
    if record.kind != FACT_KIND_NAME:
        return [*reasons, f"block is a {record.kind} record, not a fact"], None
    signed = record.record()  # JSON-shaped (lists, not tuples): comparable with the hit
    for name in ("text", "metadata", "contributor"):
        if name in hit and hit[name] != signed.get(name):
            reasons.append(f"{name} differs from the signed record's")
    return reasons, record


def _signature_checks(
    cid: str, contributor: str | None, signature: object
) -> tuple[list[str], str | None]:
    if contributor is None:
        return ["the record names no contributor"], None
    if not isinstance(signature, str):
        return ["no signature"], None
    try:
        signer = recover_signer(cid, signature)
    except InvalidInput as exc:
        return [f"signature: {exc.message}"], None
    if signer.lower() != contributor.lower():
        return [f"signature is by {signer}, not by the contributor {contributor}"], signer
    return [], signer


def _anchor_checks(
    cid: str, proof: Mapping[str, Any], roots: RootLookup
) -> tuple[list[str], int | None]:
    anchor = proof.get("anchor")
    if not isinstance(anchor, Mapping):
        return ["anchored hit without an anchor"], None
    reasons = []
    registry = anchor.get("registry")
    if anchor.get("chain_id") != roots.chain_id:
        reasons.append(f"anchored on chain {anchor.get('chain_id')}, not {roots.chain_id}")
    if not isinstance(registry, str) or registry.lower() != roots.registry:
        reasons.append(f"anchored in registry {registry}, not {roots.registry}")
    root = hex32_or_none(proof.get("root"))
    steps_given = proof.get("merkle_proof") or []
    if not isinstance(steps_given, list) or len(steps_given) > MAX_PROOF_STEPS:
        return [
            *reasons,
            f"the Merkle proof is not a list of at most {MAX_PROOF_STEPS} steps",
        ], None
    path = [hex32_or_none(step) for step in steps_given]
    if root is None or any(step is None for step in path):
        return [*reasons, "root or Merkle proof is not 32-byte 0x hex"], None
    steps = [step for step in path if step is not None]
    if not verify_proof(cid_to_bytes(cid), steps, root):
        reasons.append(f"the Merkle proof does not fold to root 0x{root.hex()}")
    known = roots.get(root)
    if known is None:
        return [*reasons, f"root 0x{root.hex()} is not anchored in the registry"], None
    for name, chain_value in (
        ("block_number", known.block_number),
        ("manifest_cid", known.manifest_cid),
        ("tx_hash", known.tx_hash),
    ):
        claimed = anchor.get(name)
        if isinstance(claimed, str) and isinstance(chain_value, str):
            same = claimed.lower() == chain_value.lower()
        else:
            same = claimed == chain_value
        if not same:
            reasons.append(f"anchor {name} {claimed!r}, the chain says {chain_value!r}")
    return reasons, known.block_number


def check_hit(hit: object, roots: RootLookup) -> HitCheck:
    """Every check of one proof-carrying hit (see the module docstring)."""
    if not isinstance(hit, Mapping) or not isinstance(hit.get("cid"), str):
        return HitCheck("?", Verdict.FAILED, ("hit has no CID",))
    try:
        cid = canonical_cid_string(hit["cid"])
    except InvalidInput as exc:
        return HitCheck(str(hit["cid"])[:80], Verdict.FAILED, (exc.message,))
    proof = hit.get("proof")
    if not isinstance(proof, Mapping):
        return HitCheck(cid, Verdict.FAILED, ("hit carries no proof (ask with proofs=true)",))
    try:
        block = base64.b64decode(str(proof.get("block")), validate=True)
    except (binascii.Error, ValueError):
        return HitCheck(cid, Verdict.FAILED, ("block is not base64",))
    reasons, record = _record_checks(hit, cid, block)
    signer = None
    if record is not None:
        more, signer = _signature_checks(cid, record.contributor, proof.get("signature"))
        reasons += more
    if proof.get("tombstone") is not None:
        reasons.append(f"revoked by tombstone {proof.get('tombstone')}")
    if proof.get("status") != "anchored":
        if reasons:
            return HitCheck(cid, Verdict.FAILED, tuple(reasons), signer)
        return HitCheck(cid, Verdict.PENDING, ("not anchored yet",), signer)
    more, block_number = _anchor_checks(cid, proof, roots)
    reasons += more
    if reasons:
        return HitCheck(cid, Verdict.FAILED, tuple(reasons), signer)
    return HitCheck(cid, Verdict.VERIFIED, (), signer, block_number)


def check_result(result: object, roots: RootLookup) -> list[HitCheck]:
    """``check_hit`` for every hit of a query answer (a JSON object with ``results``)."""
    hits = result.get("results") if isinstance(result, Mapping) else None
    if not isinstance(hits, Sequence) or isinstance(hits, str):
        return [HitCheck("?", Verdict.FAILED, ("answer has no results list",))]
    return [check_hit(hit, roots) for hit in hits]


def roots_named(result: object) -> set[bytes]:
    """The anchored roots a query answer's hits name (to refresh a cache that lacks one)."""
    hits = result.get("results") if isinstance(result, Mapping) else None
    named: set[bytes] = set()
    for hit in hits if isinstance(hits, Sequence) and not isinstance(hits, str) else []:
        proof = hit.get("proof") if isinstance(hit, Mapping) else None
        root = hex32_or_none(proof.get("root")) if isinstance(proof, Mapping) else None
        if root is not None:
            named.add(root)
    return named
