"""The wire schemas of ``POST /v1/query`` (REST, MCP, the clients and the CLI all use these):
the request, the options every client takes, and the answer with its per-hit provenance and
proof."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from api._schema_parts import absent, filter_schema, model_cid_needs_vector, visible_query
from node.cid import MAX_CID_STRING
from node.facts import COLLECTION_PATTERN
from node.limits import (
    DEFAULT_K,
    MAX_COLLECTION_CHARS,
    MAX_EF,
    MAX_K,
    MAX_QUERY_BUDGET_SECONDS,
    MAX_QUERY_BYTES,
    MAX_QUERY_COLLECTIONS,
    MAX_VECTOR_COMPONENTS,
)
from node.search import REPUTATION_POOL, RankBy, Scope, SearchMode

#: What ``include`` may name: the fields of a hit, and ``context``.
QueryField = Literal[
    "cid",
    "text",
    "score",
    "relevance",
    "metadata",
    "contributor",
    "provenance",
    "superseded_by",
    "curation",
    "source",
    "context",
]


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=model_cid_needs_vector)

    query: str = Field(
        description=f"What to look for: up to {MAX_QUERY_BYTES} bytes of UTF-8 with a visible "
        "character.",
        examples=["Where is the Eiffel Tower?"],
        json_schema_extra=visible_query,
    )
    k: StrictInt = Field(DEFAULT_K, ge=1, le=MAX_K, description="How many facts to return.")
    mode: SearchMode = Field(
        SearchMode.HYBRID, description="dense (embeddings), keyword (BM25) or hybrid (RRF)."
    )
    filter: dict[str, Any] | None = Field(
        None,
        description='Exact metadata filter: {"key": value} or {"key": {"$in": [v1, v2]}}.',
        examples=[{"lang": "en", "tags": {"$in": ["geography", "history"]}}],
        json_schema_extra=filter_schema,
    )
    min_score: StrictFloat | None = Field(
        None, description="Drop results scoring below this (scale depends on the mode)."
    )
    vector: list[StrictFloat] | None = Field(
        None,
        max_length=MAX_VECTOR_COMPONENTS,
        description="Optional query embedding made with the node's model (see /v1/status); "
        "used instead of embedding `query` for the dense ranking.",
    )
    model_cid: StrictStr | None = Field(
        None,
        min_length=1,
        max_length=MAX_CID_STRING,
        description="The model CID of the model that made `vector` (only with `vector`): when "
        "it is not the node's (/v1/status `model.cid`), the query is refused with 400 "
        "model_mismatch and nothing is searched, instead of comparing vectors of two models. "
        "The served schema lists the node's CID in its base32 form; any multibase form of the "
        "same CID is accepted.",
    )
    include_superseded: StrictBool = Field(
        False,
        description="Also return facts that a newer version by their contributor replaces.",
    )
    min_relevance: StrictFloat | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="The context cites only hits whose relevance (dense cosine with the query, "
        "-1..1, the same scale in every mode) reaches this; default: the node's "
        "(KNOWHUB_MIN_RELEVANCE, 0.35 for all-MiniLM-L6-v2). The results are not cut.",
    )
    proofs: StrictBool = Field(
        False,
        description="Attach to each hit its `proof`: the record block, signature, Merkle proof "
        "and anchor, so a client checks it against the chain alone (whatever `include` says).",
    )
    rank: RankBy = Field(
        RankBy.REPUTATION,
        description="relevance: the mode's order; reputation: the "
        f"first k + {REPUTATION_POOL} candidates re-ordered by weight / position, the "
        "weight from the contributor's reputation and the fact's attestations (README, "
        "'Curation').",
    )
    min_reputation: StrictFloat | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Leave out facts whose contributor's reputation (0..1, as this node "
        "computes it from its trust roots) is below this.",
    )
    collections: list[StrictStr] | None = Field(
        None,
        max_length=MAX_QUERY_COLLECTIONS,
        # item rule documented, checked by the domain (invalid_query)
        json_schema_extra={
            "items": {"pattern": COLLECTION_PATTERN, "maxLength": MAX_COLLECTION_CHARS}
        },
        description=f"Search only these collections (up to {MAX_QUERY_COLLECTIONS}); a name "
        "this node does not hold matches nothing. Default: every collection the node holds.",
        examples=[["default"]],
    )
    scope: Scope = Field(
        Scope.LOCAL,
        description="local: this node's collections only. network: also the collections "
        "this node does not hold, asked of connected peers that advertise them (same model "
        "CID only); their hits are verified (proof, signature, collection, filter, relevance "
        "recomputed here) before they are merged by relevance, and the answer says what was "
        "covered in `completeness` (README, 'Federated query').",
    )
    budget_ms: StrictInt | None = Field(
        None,
        ge=10,
        le=MAX_QUERY_BUDGET_SECONDS * 1000,
        description="scope network: milliseconds to wait for peers (at most the node's "
        "KNOWHUB_FEDERATION_BUDGET); a peer that has not answered by then is reported as "
        "timed out.",
    )
    ef: StrictInt | None = Field(
        None,
        ge=1,
        le=MAX_EF,
        description="Search breadth of the node's approximate vector index (HNSW efSearch: "
        "the candidates its graph walk keeps): higher finds more of the exact nearest "
        "neighbours and takes longer. Default: the node's (KNOWHUB_HNSW_EF_SEARCH). Never "
        "narrower than the candidates the query needs. Ignored where the search is exact "
        "anyway: while the node's index is flat (below KNOWHUB_HNSW_THRESHOLD vectors), when "
        "a filter or collections leave at most KNOWHUB_EXACT_FILTER_LIMIT facts, and in "
        "keyword mode; peers of a network query search at their own.",
        examples=[100],
    )
    include: list[QueryField] | None = Field(
        None,
        max_length=len(get_args(QueryField)),
        description="Only these fields per hit (and `context` only when listed): a lean answer. "
        "Default: every field and the context.",
        examples=[["cid", "score", "relevance"]],
    )


class QueryOptions(TypedDict, total=False):
    """The options of a query as every client takes them (``NodeClient.query(text, **opts)``,
    the MCP backend): the fields of ``QueryIn`` besides ``query``; ``include`` is REST-only
    (a lean answer is not a ``QueryOut``)."""

    k: int
    mode: str
    filter: Mapping[str, Any] | None
    min_score: float | None
    vector: Sequence[float] | None
    model_cid: str | None
    include_superseded: bool
    min_relevance: float | None
    proofs: bool
    rank: str
    min_reputation: float | None
    collections: Sequence[str] | None
    scope: str
    budget_ms: int | None
    ef: int | None


class HitProvenance(BaseModel):
    status: Literal["pending", "anchored"]
    block_number: int | None = Field(description="Block of the anchoring transaction.")


class HitAnchorOut(BaseModel):
    chain_id: int | None
    registry: str | None
    block_number: int | None
    tx_hash: str | None
    manifest_cid: str | None = Field(description="Manifest of the batch (in the chain's event).")
    anchored_at: int | None = Field(description="Unix time of the anchoring block.")


class HitProofOut(BaseModel):
    """Everything that checks a hit without the node (``node.proofs``): recompute the CID from
    ``block``, recover the signer, fold ``merkle_proof`` to ``root`` and look the root up in
    the registry's ``Anchored`` events."""

    block: str = Field(description="The fact record, DAG-CBOR, base64: its hash is the CID.")
    signature: str | None = Field(description="The contributor's EIP-191 signature of the CID.")
    status: Literal["pending", "anchored"]
    root: str | None = Field(description="Merkle root (0x hex) of the fact's anchored batch.")
    merkle_proof: list[str] = Field(description="Sibling hashes (0x hex), leaf to root.")
    anchor: HitAnchorOut | None = Field(description="Where the root is anchored (anchored).")
    tombstone: str | None = Field(
        description="A tombstone this node holds for the fact (it then erases the fact): "
        "normally null."
    )


class HitCuration(BaseModel):
    """What this node's curation says about a hit (``node.curation``)."""

    reputation: float = Field(
        description="The contributor's reputation, 0..1, personalised to this node's trust roots."
    )
    endorsements: int = Field(description="Current endorsements of the fact (any attester).")
    disputes: int = Field(description="Current disputes of the fact (any attester).")
    trusted_disputes: int = Field(description="Disputes by attesters this node trusts.")
    weight: float = Field(description="The factor rank=reputation weighs the hit by (0..1).")


class QueryHit(BaseModel):
    cid: str
    text: str
    score: float = Field(description="Rank score in the mode's own scale (node.search).")
    relevance: float | None = Field(
        None,
        description="Dense cosine of the query and the fact (-1..1, every mode): what the "
        "context threshold compares.",
    )
    metadata: dict[str, Any]
    contributor: str | None
    provenance: HitProvenance = Field(
        description="Anchoring state; the full proof is at /v1/facts/{cid}/provenance."
    )
    superseded_by: str | None = Field(
        None,
        exclude_if=absent,
        description="With include_superseded: the newer version that replaces this fact (left "
        "out for current facts).",
    )
    proof: HitProofOut | None = Field(
        None, exclude_if=absent, description="With proofs: what checks this hit offline."
    )
    curation: HitCuration | None = Field(
        None, description="The contributor's reputation and the fact's attestations."
    )
    source: str | None = Field(
        None,
        exclude_if=absent,
        description="scope network: the peer that answered with this hit (left out for this "
        "node's own hits).",
    )
    verdict: Literal["verified", "pending"] | None = Field(
        None,
        exclude_if=absent,
        description="A peer's hit as checked here: verified (anchor checked against the chain) "
        "or pending (record and signature checked; not anchored, or this node reads no chain).",
    )


class PeerReportOut(BaseModel):
    peer_id: str
    collections: list[str] = Field(description="The collections this peer was asked for.")
    outcome: Literal["answered", "timeout", "unreachable", "refused", "invalid"]
    hits: int = Field(description="Hits that passed every check.")
    rejected: int = Field(description="Hits that failed a check (the peer is penalised).")
    ms: float
    reason: str | None


class CompletenessOut(BaseModel):
    """What a network query covered."""

    complete: bool = Field(description="Every wanted collection was searched.")
    local: list[str] = Field(description="Collections searched on this node.")
    remote: list[str] = Field(description="Collections searched by a peer that answered.")
    missing: list[str] = Field(description="Collections nobody searched.")
    reasons: dict[str, str] = Field(description="Why each missing collection is missing.")
    peers: list[PeerReportOut]


class QueryOut(BaseModel):
    results: list[QueryHit]
    context: str = Field(
        description="Numbered facts with CID citations, ready for a prompt: only the hits whose "
        "relevance reaches min_relevance, or a plain statement that none does."
    )
    min_relevance: float | None = Field(None, description="The threshold the context used.")
    completeness: CompletenessOut | None = Field(
        None, exclude_if=absent, description="scope network: what the answer covers."
    )


class LeanQueryOut(BaseModel):
    """The answer to a query with ``include``: only the named fields of each hit, and the
    context only when ``context`` is named."""

    results: list[dict[str, Any]] = Field(
        description="Each hit with exactly the fields `include` names (see QueryHit)."
    )
    context: str | None = Field(None, description="Only when `include` names `context`.")
    min_relevance: float | None = Field(None, description="Only with the context.")
    completeness: CompletenessOut | None = Field(
        None, description="scope network: what the answer covers (always given)."
    )
