"""Domain objects to response schemas: one mapping, shared by the REST routes and MCP tools."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from api.curation_schemas import AttestOut, ContributorOut
from api.schemas import (
    ChainStatusOut,
    CollectionsOut,
    CompletenessOut,
    FactOut,
    FactRecord,
    HitProofOut,
    HitProvenance,
    IndexStatus,
    IngestStatusOut,
    IntegrityOut,
    IpfsStatus,
    ModelStatus,
    ModerationOut,
    NetworkStatusOut,
    ProvenanceOut,
    QueryHit,
    QueryIn,
    QueryOut,
    RevocationsOut,
    RevokeOut,
    StatusOut,
    TombstoneRecord,
)
from node.attestation import Attestation
from node.cid import canonical_cid_string
from node.curation import ContributorView
from node.filters import parse_filter
from node.ports import StoredFact
from node.proofs import hit_proof_json
from node.results import (
    Contribution,
    NodeStatus,
    ProvenanceView,
    QueryResult,
    ScoredFact,
    Standing,
)
from node.search import Query, RankBy, Scope, SearchMode


def query_from(body: QueryIn) -> Query:
    """The domain query of a request (REST and the MCP backend)."""
    return Query(
        text=body.query,
        k=body.k,
        mode=SearchMode(body.mode),  # the service compares modes by identity
        filter=parse_filter(body.filter),
        min_score=body.min_score,
        vector=None if body.vector is None else tuple(body.vector),
        model_cid=body.model_cid,
        include_superseded=body.include_superseded,
        min_relevance=body.min_relevance,
        proofs=body.proofs,
        rank=RankBy(body.rank),
        min_reputation=body.min_reputation,
        collections=None if body.collections is None else tuple(body.collections),
        scope=Scope(body.scope),
        budget=None if body.budget_ms is None else body.budget_ms / 1000,
        ef=body.ef,
    )


def curation_json(standing: Standing | None) -> dict[str, float | int] | None:
    """A hit's ``curation`` field (one shape for full and lean answers)."""
    if standing is None:
        return None
    return {
        "reputation": round(standing.reputation, 6),
        "endorsements": standing.endorsements,
        "disputes": standing.disputes,
        "trusted_disputes": standing.trusted_disputes,
        "weight": round(standing.weight, 6),
    }


def hit_proof(r: ScoredFact) -> dict[str, Any] | None:
    """A hit's proof in its wire form: this node's, or the one a peer sent (checked)."""
    if r.proof is not None:
        return hit_proof_json(r.proof)
    return None if r.remote_proof is None else dict(r.remote_proof)


def completeness_json(result: QueryResult) -> dict[str, Any] | None:
    """A network answer's ``completeness`` (one shape for full and lean answers)."""
    c = result.completeness
    if c is None:
        return None
    return {
        "complete": c.complete,
        "local": list(c.local),
        "remote": list(c.remote),
        "missing": list(c.missing),
        "reasons": dict(c.reasons),
        "peers": [
            {
                "peer_id": p.peer_id,
                "collections": list(p.collections),
                "outcome": p.outcome.value,
                "hits": p.hits,
                "rejected": p.rejected,
                "ms": p.ms,
                "reason": p.reason,
            }
            for p in c.peers
        ],
    }


def query_out(result: QueryResult) -> QueryOut:
    completeness = completeness_json(result)
    return QueryOut(
        results=[
            QueryHit(
                cid=r.fact.cid,
                text=r.fact.text,
                score=r.score,
                relevance=r.relevance,
                metadata=r.fact.metadata,
                contributor=r.fact.contributor,
                provenance=HitProvenance(
                    status="pending" if r.anchored_block is None else "anchored",
                    block_number=r.anchored_block,
                ),
                superseded_by=r.fact.superseded_by,
                proof=None if (proof := hit_proof(r)) is None else HitProofOut(**proof),
                curation=curation_json(r.standing),
                source=r.source,
                verdict=r.verdict,
            )
            for r in result.results
        ],
        context=result.context,
        min_relevance=result.min_relevance,
        completeness=None if completeness is None else CompletenessOut(**completeness),
    )


def lean_query_out(result: QueryResult, include: Sequence[str]) -> bytes:
    """Only the ``include`` fields of each hit, and the context only when named: JSON built
    straight from the domain result (no pydantic model per hit)."""
    wanted = frozenset(include)
    hits = []
    for r in result.results:
        fact = r.fact
        full = {
            "cid": fact.cid,
            "text": fact.text,
            "score": r.score,
            "relevance": r.relevance,
            "metadata": fact.metadata,
            "contributor": fact.contributor,
            "provenance": {
                "status": "pending" if r.anchored_block is None else "anchored",
                "block_number": r.anchored_block,
            },
            "superseded_by": fact.superseded_by,
            "curation": curation_json(r.standing),
            "source": r.source,
        }
        hit = {key: value for key, value in full.items() if key in wanted}
        proof = hit_proof(r)
        if proof is not None:
            hit["proof"] = proof
        if r.verdict is not None:
            hit["verdict"] = r.verdict
        hits.append(hit)
    out: dict[str, object] = {"results": hits}
    if result.completeness is not None:
        out["completeness"] = completeness_json(result)
    if "context" in wanted:
        out["context"] = result.context
        out["min_relevance"] = result.min_relevance
    return orjson.dumps(out)


def fact_out(stored: StoredFact) -> FactOut:
    return FactOut(
        cid=stored.cid,
        record=FactRecord.model_validate(stored.record()),
        signature=stored.signature,
        status="stored",
        stored_at=stored.stored_at,
        superseded_by=stored.superseded_by,
        duplicate_of=stored.duplicate_of,
    )


def provenance_out(view: ProvenanceView) -> ProvenanceOut:
    p = view.provenance
    batch = p.batch if p.status == "anchored" else None
    return ProvenanceOut(
        cid=p.cid,
        record=(
            TombstoneRecord.model_validate(p.record)
            if p.record.get("kind") == "tombstone"
            else FactRecord.model_validate(p.record)
        ),
        contributor=p.contributor,
        signature=p.signature,
        signature_valid=view.signature_valid,
        status="anchored" if batch is not None else "pending",
        root=None if batch is None else "0x" + batch.root.hex(),
        proof=[] if batch is None else ["0x" + h.hex() for h in p.proof],
        manifest_cid=None if batch is None else batch.manifest_cid,
        chain_id=None if batch is None else batch.chain_id,
        registry=None if batch is None else batch.registry,
        tx_hash=None if batch is None else batch.tx_hash,
        block_number=None if batch is None else batch.block_number,
        anchored_at=None if batch is None else batch.anchored_at,
    )


def status_out(s: NodeStatus) -> StatusOut:
    chain = None
    if s.chain is not None:
        chain = ChainStatusOut(
            rpc_url=s.chain.rpc_url,
            chain_id=s.chain.chain_id,
            registry=s.chain.registry,
            account=s.chain.account,
            anchor_queue=s.chain.queued,
            open_batches=s.chain.open_batches,
            last_anchored_block=s.chain.last_anchored_block,
            error=s.chain.error,
            follow_block=s.chain.follow_block,
            verified_batches=s.chain.verified_batches,
            facts_from_chain=s.chain.facts_from_chain,
            follow_error=s.chain.follow_error,
        )
    return StatusOut(
        version=s.version,
        facts=s.facts,
        index=IndexStatus(kind=s.index_kind, size=s.index_size, duplicates=s.duplicates),
        model=ModelStatus(
            name=s.model, dimension=s.dimension, cid=s.model_cid, precision=s.model_precision
        ),
        ipfs=IpfsStatus(
            store=s.content_store,
            publication_backlog=s.publication_backlog,
            error=s.content_store_error,
        ),
        operator=s.operator,
        require_signatures=s.require_signatures,
        chain=chain,
        p2p=None
        if s.network is None
        else NetworkStatusOut.model_validate(s.network, from_attributes=True),
        ingest=IngestStatusOut.model_validate(s.ingest, from_attributes=True),
        integrity=IntegrityOut.model_validate(s.integrity, from_attributes=True),
        revocations=RevocationsOut.model_validate(s.revocations, from_attributes=True),
        moderation=ModerationOut(hidden=s.hidden),
        collections=None
        if s.collections is None
        else CollectionsOut(held=s.collections.held, facts=s.collections.facts),
    )


def revoke_out(revoked: str, result: Contribution) -> RevokeOut:
    """A revocation's answer: the tombstone, the fact it revokes (canonical CID), new or not."""
    return RevokeOut(
        tombstone=result.cid,
        revokes=canonical_cid_string(revoked),
        status="created" if result.created else "exists",
    )


def attest_out(made: Attestation, result: Contribution) -> AttestOut:
    """An attestation's answer (REST and MCP)."""
    return AttestOut(
        attestation=made.cid,
        about=made.about,
        verdict="endorse" if made.verdict == "endorse" else "dispute",
        contributor=made.contributor,
        at=made.at,
        status="created" if result.created else "exists",
    )


def contributor_out(view: ContributorView) -> ContributorOut:
    return ContributorOut(
        address=view.address,
        reputation=round(view.reputation, 6),
        trust=view.trust,
        trust_root=view.trust_root,
        facts=view.facts,
        endorsements=view.endorsements,
        disputes=view.disputes,
        endorsements_given=view.endorsements_given,
        disputes_given=view.disputes_given,
    )
