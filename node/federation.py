"""Federated retrieval, the pure part: the remote query and answer, which peer is asked for
which collection, the checks of a remote hit, the merge and the completeness report.

A query with scope ``network`` covers collections this node does not hold by asking connected
peers that advertise them (``node.network_ports.DirectoryEntry``) over the query protocol
(``p2p.query_protocol``; docs/protocol.md section 6c). The async flow lives in
``node.federator``; everything here is synchronous and I/O-free.

Invariants:
- A peer whose model CID differs from this node's is never asked, and nothing it sends is
  merged: vectors and relevances of two models are not comparable.
- A remote hit is merged only after every check passed: the exact proof form
  (``proof_shape_fault``), the proof (``node.proofs.check_hit``: block hashes to the CID,
  valid fact record, signature of its contributor, no tombstone, and the anchor against the
  chain's roots when this node can confirm it, else the hit is pending), the fact's collection
  is one the peer says it searched, and it matches the query's metadata filter. A hit failing
  any of these is dropped and its peer penalised; one stating no relevance is only dropped.
- Every remote hit an answer shows has its relevance recomputed here with this node's model,
  within ``RELEVANCE_TOLERANCE`` of the peer's (``node.federator``), and the order is
  ``merge``'s over this node's own numbers (one round: dense) or ``node.pools.fuse``'s (two
  rounds: keyword and hybrid), then its own curation weights.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from node.errors import (
    CollectionNotHeld,
    InvalidInput,
    KnowhubError,
    ModelMismatch,
    Unavailable,
)
from node.facts import Fact, fact_from_map
from node.filters import MetadataFilter
from node.kinds import decode_record
from node.limits import MAX_QUERY_COLLECTIONS
from node.ports import DirectoryEntry, RemoteHit, StoredFact
from node.proofs import MAX_PROOF_STEPS, HitCheck, RootLookup, Verdict, check_hit, hex32_or_none
from node.results import Completeness, PeerOutcome, PeerReport, ScoredFact
from node.search import Hit, SearchMode, reciprocal_rank_fusion

#: How far a peer's stated relevance may be from the one recomputed here (same model CID:
#: float rounding and int8 kernels differ by ~1e-3 across CPUs).
RELEVANCE_TOLERANCE = 0.02
#: Peers asked by one network query at most.
MAX_PEERS_PER_QUERY = 8


def refusal_code(exc: KnowhubError) -> str:
    """The protocol's error code for why this node refuses a peer's query (one mapping for
    ``p2p.query_protocol`` and ``node.memory_network``)."""
    if isinstance(exc, ModelMismatch):
        return "model_mismatch"
    if isinstance(exc, CollectionNotHeld):
        return "not_held"
    if isinstance(exc, InvalidInput):  # valid on the wire, refused by the node (dimension)
        return "invalid"
    if isinstance(exc, Unavailable):
        return "busy"
    return "unavailable"


@dataclass(frozen=True, slots=True)
class Plan:
    """Which peer is asked for which collections, and what nobody can answer."""

    local: tuple[str, ...]
    asks: dict[str, tuple[str, ...]]
    missing: dict[str, str]


class HasDirectory(Protocol):
    def directory(self) -> list[DirectoryEntry]: ...


def _advertises(entry: DirectoryEntry, name: str) -> bool:
    """Whether ``entry`` advertises facts (a non-empty set) of collection ``name``."""
    advert = entry.collections.get(name)
    return advert is not None and advert.facts > 0


def holders_of(network: HasDirectory, name: str, limit: int = 8) -> tuple[str, ...]:
    """Peers that advertise facts of collection ``name`` (``network.directory()``),
    connected first, then the freshest: what a refusal to store a fact names."""
    entries = [e for e in network.directory() if _advertises(e, name)]
    entries.sort(key=lambda e: (not e.connected, -e.seen_at))
    return tuple(e.peer_id for e in entries[:limit])


def wanted_collections(
    named: Sequence[str] | None,
    held: frozenset[str] | None,
    stored: Sequence[str],
    directory: Sequence[DirectoryEntry],
) -> list[str]:
    """The collections a network query covers: those it names, else every collection this
    node holds or stores and every one a connected peer advertises (not every name a
    stranger's advert spreads)."""
    if named is not None:
        return sorted(set(named))
    known = set(stored) | (set(held) if held is not None else set())
    for entry in directory:
        if entry.connected:
            known.update(entry.collections)
    return sorted(known)


def plan_query(
    wanted: Sequence[str],
    holds: Any,
    directory: Sequence[DirectoryEntry],
    model_cid: str,
    excluded: frozenset[str] = frozenset(),
    max_peers: int = MAX_PEERS_PER_QUERY,
) -> Plan:
    """Search held collections here; ask, for each other one, a connected peer with this
    node's model that advertises facts of it and is not ``excluded`` (penalised), preferring
    peers that cover more of them, then the freshest advert. ``holds`` answers whether this
    node holds a collection (``node.collections.Collections.holds``)."""
    local = tuple(c for c in wanted if holds(c))
    remote = [c for c in wanted if not holds(c)]
    candidates: dict[str, tuple[DirectoryEntry, frozenset[str]]] = {}
    why: dict[str, set[str]] = {
        "other model": set(),
        "offline": set(),
        "penalised": set(),
        "unasked": set(),
    }
    for entry in directory:
        offered = [c for c in remote if _advertises(entry, c)]
        if not offered:
            continue
        if entry.model_cid != model_cid:
            why["other model"].update(offered)
            continue
        if not entry.connected:
            why["offline"].update(offered)
            continue
        if entry.peer_id in excluded:
            why["penalised"].update(offered)
            continue
        why["unasked"].update(offered)
        seen = candidates.get(entry.peer_id)
        if seen is None or seen[0].seen_at < entry.seen_at:
            candidates[entry.peer_id] = (entry, frozenset(offered))
    asks: dict[str, list[str]] = {}
    left = set(remote)
    while left and len(asks) < max_peers:
        best = max(
            candidates.values(),
            key=lambda c: (len(left & c[1]), c[0].seen_at, c[0].peer_id),
            default=None,
        )
        if best is None or not left & best[1]:
            break
        # one request names at most MAX_QUERY_COLLECTIONS (the responder refuses more)
        covered = sorted(left & best[1])[:MAX_QUERY_COLLECTIONS]
        asks[best[0].peer_id] = covered
        left -= set(covered)
        del candidates[best[0].peer_id]
    missing = {c: _why_missing(c, why) for c in sorted(left)}
    return Plan(local, {p: tuple(c) for p, c in asks.items()}, missing)


def _why_missing(name: str, why: dict[str, set[str]]) -> str:
    if name in why["unasked"]:
        return (
            "its holders were not asked: the peer limit or the collections one request "
            "names were reached"
        )
    if name in why["penalised"]:
        return "its connected holders failed verification recently (penalised)"
    if name in why["offline"]:
        return "no holder with this node's model is connected"
    if name in why["other model"]:
        return "only peers with another embedding model hold it"
    return "no peer advertises it"


@dataclass(frozen=True, slots=True)
class CheckedHit:
    """A remote hit that passed the proof, collection and filter checks; its relevance is
    still the peer's until ``confirm_relevance``."""

    fact: Fact
    signature: str
    claimed_relevance: float
    check: HitCheck
    proof: Mapping[str, Any]


_PROOF_KEYS = frozenset(
    {"block", "signature", "status", "root", "merkle_proof", "anchor", "tombstone"}
)
_ANCHOR_INTS = ("chain_id", "block_number", "anchored_at")
_ANCHOR_STRS = ("registry", "tx_hash", "manifest_cid")


def proof_shape_fault(proof: Mapping[str, Any]) -> str | None:
    """Why a remote hit's proof is not exactly the ``node.proofs.hit_proof_json`` form (key
    set, value types, a known status), or None. Only a proof of that form is checked, shown
    to the client and served on."""
    if set(proof) != _PROOF_KEYS:
        return f"proof must have exactly the keys {sorted(_PROOF_KEYS)}"
    if not isinstance(proof["block"], str) or not isinstance(proof["signature"], str):
        return "proof block and signature must be strings"
    if proof["tombstone"] is not None:
        return f"revoked by tombstone {str(proof['tombstone'])[:80]}"
    steps = proof["merkle_proof"]
    if not isinstance(steps, list) or len(steps) > MAX_PROOF_STEPS:
        return f"merkle_proof must be a list of at most {MAX_PROOF_STEPS} hashes"
    if proof["status"] == "pending":
        if proof["root"] is not None or steps or proof["anchor"] is not None:
            return "a pending proof names no root, proof or anchor"
        return None
    if proof["status"] != "anchored":
        return "proof status must be pending or anchored"
    anchor = proof["anchor"]
    if (
        not isinstance(proof["root"], str)
        or not all(isinstance(h, str) for h in steps)
        or not isinstance(anchor, dict)
        or set(anchor) != {*_ANCHOR_INTS, *_ANCHOR_STRS}
        or not all(anchor[k] is None or type(anchor[k]) is int for k in _ANCHOR_INTS)
        or not all(anchor[k] is None or isinstance(anchor[k], str) for k in _ANCHOR_STRS)
    ):
        return "an anchored proof has a root, hex hashes and the anchor's fields"
    return None


def check_remote_hit(
    hit: RemoteHit,
    collections: Sequence[str],
    query_filter: MetadataFilter | None,
    roots: RootLookup | None,
) -> CheckedHit | str | None:
    """The checks of one remote hit before its relevance; why it fails, as text, otherwise;
    None for a hit that states no relevance (dropped, no fault: protocol section 6c).
    Without ``roots`` (this node reads no chain) an anchor claim is not checked: the hit is
    at best ``pending``."""
    if hit.relevance is None:  # unverifiable: dropped (it only hides the peer's own hit)
        return None
    bad_shape = proof_shape_fault(hit.proof)
    if bad_shape is not None:
        return bad_shape
    proof = dict(hit.proof)
    root = hex32_or_none(proof.get("root"))
    if proof["status"] == "anchored" and (roots is None or root is None or not roots.get(root)):
        # no chain read here, or a root this node's view of the chain lacks yet (it may lag
        # the peer's): the anchor goes unchecked and unshown; the hit is at best pending
        proof = {**proof, "status": "pending", "anchor": None, "root": None, "merkle_proof": []}
    checked = check_hit({"cid": hit.cid, "proof": proof}, roots or _NO_ROOTS)
    if checked.verdict is Verdict.FAILED:
        return "; ".join(checked.reasons)
    record = decode_record(_block_of(proof))
    assert isinstance(record, Fact)  # check_hit passed: a fact record
    if record.collection not in collections:
        return f"fact of collection {record.collection!r}, which was not asked of this peer"
    if query_filter is not None and not query_filter.matches(record.record()["metadata"]):
        return "fact does not match the query's metadata filter"
    fact = fact_from_map(record.record(), record.block)
    return CheckedHit(fact, str(proof["signature"]), hit.relevance, checked, proof)


def confirm_relevance(stated: float, recomputed: float) -> str | None:
    """Why a peer's stated relevance cannot be right given the one recomputed here (same
    model, ``RELEVANCE_TOLERANCE``), or None."""
    if abs(stated - recomputed) > RELEVANCE_TOLERANCE:
        return f"stated relevance {stated:.4f}, recomputed {recomputed:.4f} with the same model"
    return None


def remote_result(hit: CheckedHit, relevance: float, peer_id: str) -> ScoredFact:
    """A verified remote hit as a result (no catalog row: id -1)."""
    fact = hit.fact
    stored = StoredFact(
        id=-1,
        cid=fact.cid,
        text=fact.text,
        metadata=fact.record()["metadata"],
        contributor=fact.contributor,
        stored_at=0.0,
        signature=hit.signature,
        supersedes=fact.supersedes,
        collection=fact.collection,
    )
    anchored = hit.check.block_number if hit.check.verdict is Verdict.VERIFIED else None
    return ScoredFact(
        stored,
        score=relevance,
        anchored_block=anchored,
        relevance=round(relevance, 6),
        source=peer_id,
        remote_proof=hit.proof,
        verdict=hit.check.verdict.value,
    )


def merge(
    local: Sequence[ScoredFact],
    remote: Sequence[ScoredFact],
    mode: SearchMode,
) -> list[ScoredFact]:
    """Local and remote results of a one-round network query (dense, or one whose text has
    no keyword term: ``node.pools`` ranks the others) by CID and text (a local copy wins),
    by relevance, each with the score a local search of the mode gives: the relevance in
    dense, else the reciprocal-rank fusion of that one order (an empty keyword ranking adds
    nothing). Ties keep local first. Curation re-ranks afterwards."""
    seen_cids = {r.fact.cid for r in local}
    seen_texts = {r.fact.text for r in local}
    pool = list(local)
    for r in remote:
        if r.fact.cid in seen_cids or r.fact.text in seen_texts:
            continue
        seen_cids.add(r.fact.cid)
        seen_texts.add(r.fact.text)
        pool.append(r)
    order = sorted(
        (Hit(n, r.relevance) for n, r in enumerate(pool) if r.relevance is not None),
        key=lambda h: (-h.score, h.id),
    )
    if mode is not SearchMode.DENSE:
        order = reciprocal_rank_fusion([order])
    ranked = [replace(pool[h.id], score=h.score) for h in order]
    left = {h.id for h in order}
    return ranked + [pool[n] for n in range(len(pool)) if n not in left]


def completeness(plan: Plan, reports: Sequence[PeerReport]) -> Completeness:
    """What the plan and the peers' outcomes covered."""
    answered: list[str] = []
    missing = dict(plan.missing)
    for report in reports:
        if report.outcome is PeerOutcome.ANSWERED:
            answered.extend(report.searched)
            for c in report.collections:
                if c not in report.searched:
                    missing[c] = f"holder {report.peer_id} does not hold it (a stale advert)"
        else:
            for c in report.collections:
                missing[c] = f"holder {report.peer_id} {report.outcome.value}" + (
                    f": {report.reason}" if report.reason else ""
                )
    return Completeness(
        complete=not missing,
        local=plan.local,
        remote=tuple(sorted(answered)),
        missing=tuple(sorted(missing)),
        peers=tuple(reports),
        reasons=missing,
    )


def _block_of(proof: Mapping[str, Any]) -> bytes:
    return base64.b64decode(str(proof["block"]), validate=True)


class _NoRoots:
    chain_id = -1
    registry = ""

    def get(self, root: bytes) -> None:
        return None


_NO_ROOTS = _NoRoots()
