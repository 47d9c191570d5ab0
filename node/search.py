"""Ranking rules shared by every backend: fusion, relevance, the LLM context string.

Two numbers per hit. ``score`` ranks, in the mode's own scale: dense = cosine (-1..1),
keyword = BM25 (0..unbounded, grows with the corpus), hybrid = reciprocal-rank fusion
(``sum 1/(60 + rank)``: 0.0328 for a first place in both lists whatever the hit is), so it
says nothing about whether a hit is relevant. ``relevance`` is the dense cosine between the
query's embedding and the fact's, whichever ranker found the fact: one scale for every mode,
calibrated once per model. The LLM context holds only hits with ``relevance >=
min_relevance`` and says so plainly when none qualifies; the ranked results are not cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from operator import itemgetter

from node.filters import MetadataFilter

#: The constant of reciprocal-rank fusion (Cormack et al. 2009); 60 is the usual choice.
RRF_K = 60

#: The node's default context threshold on ``relevance`` for all-MiniLM-L6-v2, chosen on
#: SciFact test claims and 100 off-topic questions (BENCHMARKS.md, "Relevant-only context"):
#: 96 % of off-topic questions get an empty context, 98 % of relevant top-5 hits stay in it.
#: Another model needs its own (``KNOWHUB_MIN_RELEVANCE``).
DEFAULT_MIN_RELEVANCE = 0.35


#: Candidates (beyond k) of the ranker's pool the reputation ranking re-orders: a fact can climb
#: from at most this deep (``rank_by_reputation``).
REPUTATION_POOL = 40


class RankBy(StrEnum):
    """What orders the hits: the mode's relevance alone, or relevance weighed by the
    contributor's reputation and the fact's attestations (``rank_by_reputation``)."""

    RELEVANCE = "relevance"
    REPUTATION = "reputation"


class SearchMode(StrEnum):
    DENSE = "dense"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


class Scope(StrEnum):
    """Where a query searches: this node's collections, or also the collections peers hold
    (``node.federation``)."""

    LOCAL = "local"
    NETWORK = "network"


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    k: int = 5
    mode: SearchMode = SearchMode.HYBRID
    filter: MetadataFilter | None = None
    min_score: float | None = None
    #: A query embedding computed by the caller with the node's model; replaces embedding
    #: ``text`` for the dense ranking (``text`` still drives keyword search and the context).
    vector: tuple[float, ...] | None = None
    #: The model CID (``node.model_identity``) of the model that made ``vector``, as the
    #: caller says: another than the node's is refused (``ModelMismatch``), nothing searched.
    model_cid: str | None = None
    #: Also return facts that a newer version by their contributor replaces (``supersedes``).
    include_superseded: bool = False
    #: Context threshold on ``relevance``; None: the node's default.
    min_relevance: float | None = None
    #: Attach to each hit what checks it offline (``node.proofs``).
    proofs: bool = False
    rank: RankBy = RankBy.REPUTATION
    #: Leave out facts whose contributor's reputation (0..1) is below this; None: keep all.
    min_reputation: float | None = None
    #: Search only these collections (``node.collections``); None: those the node holds
    #: (scope local) or every collection known (scope network).
    collections: tuple[str, ...] | None = None
    scope: Scope = Scope.LOCAL
    #: Seconds a network query waits for peers; None: the node's setting (a lower one only).
    budget: float | None = None
    #: Search breadth of this node's approximate vector index (HNSW efSearch, 1..MAX_EF):
    #: higher finds more of the exact nearest neighbours and costs more; None: the node's
    #: setting. An exact index ignores it; peers of a network query use their own.
    ef: int | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    """A ranked catalog row id with its score in the mode's own scale."""

    id: int
    score: float


def reciprocal_rank_fusion(rankings: Iterable[Sequence[Hit]], k: int = RRF_K) -> list[Hit]:
    """Fuse ranked lists: score = sum over lists of 1 / (k + rank), rank from 1."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (k + rank)
    # by id, then stably by score, highest first: ties keep the smaller id first (two C-level
    # sorts instead of a Python key per item; this runs on every hybrid query)
    by_id = sorted(scores.items())
    return [Hit(i, s) for i, s in sorted(by_id, key=itemgetter(1), reverse=True)]


def rank_by_reputation(weights: Sequence[float]) -> list[int]:
    """The order (indexes into ``weights``) of hits given in relevance order, re-ranked by
    ``weight / position``: the reciprocal rank of the hit's relevance position (whatever the
    mode) times its curation weight (``node.reputation.fact_weight``, in (0, 1]). Equal
    weights keep the relevance order and ties keep the earlier position; a weight w moves a
    hit from position p to about p / w (a fact no trust root reaches, w = 0.05, from first to
    twentieth), so small differences between trusted contributors barely reorder."""
    keyed = [(-w / n, n) for n, w in enumerate(weights, start=1)]
    return [n - 1 for _, n in sorted(keyed)]


def curation_reorders(floor: float | None, rank: RankBy) -> bool:
    """Whether curation can leave out or move a hit (``curated_order``): only with a
    reputation floor or a ranking by reputation; otherwise it only labels the results."""
    return floor is not None or rank is RankBy.REPUTATION


def curated_order(
    reputations: Sequence[float], weights: Sequence[float], floor: float | None, rank: RankBy
) -> list[int]:
    """The hits (indexes, given in relevance order) curation keeps, in its order: those whose
    contributor's reputation reaches ``floor`` (all when None), re-ordered by
    ``rank_by_reputation`` of their weights when ``rank`` is reputation."""
    kept = [n for n, r in enumerate(reputations) if floor is None or r >= floor]
    if rank is not RankBy.REPUTATION:
        return kept
    return [kept[i] for i in rank_by_reputation([weights[n] for n in kept])]


@dataclass(frozen=True, slots=True)
class ContextFact:
    cid: str
    text: str
    #: Dense cosine with the query; None when the node could not tell (never cited then).
    relevance: float | None
    #: Disputes by attesters this node trusts (``node.curation``): the context says so.
    trusted_disputes: int = 0


def is_relevant(relevance: float | None, min_relevance: float) -> bool:
    """Whether a hit of this relevance may be cited (an unknown relevance never is)."""
    return relevance is not None and relevance >= min_relevance


def format_context(query: str, facts: Sequence[ContextFact], min_relevance: float) -> str:
    """A block ready to paste into an LLM prompt: the facts (in rank order) whose relevance
    reaches ``min_relevance``, numbered, each citing its CID; or a plain statement that this
    hub holds nothing relevant, so that an agent does not cite padding."""
    cited = [f for f in facts if is_relevant(f.relevance, min_relevance)]
    if not cited:
        if not facts:
            return f'No facts in this knowledge hub match "{query}".'
        best = max((f.relevance for f in facts if f.relevance is not None), default=None)
        shown = "unknown" if best is None else f"{best:.2f}"
        return (
            f'Nothing in this knowledge hub is relevant to "{query}": the best of {len(facts)} '
            f"matches has relevance {shown}, below the threshold {min_relevance:.2f}. "
            "Do not cite this hub for it."
        )
    lines = [f'Facts retrieved for "{query}" (cite as [n]; each CID is an IPFS content address):']
    for n, fact in enumerate(cited, start=1):
        flat = " ".join(fact.text.split())
        disputed = ""
        if fact.trusted_disputes:
            plural = "s" if fact.trusted_disputes > 1 else ""
            disputed = f" [DISPUTED by {fact.trusted_disputes} trusted contributor{plural}]"
        lines.append(f"[{n}] {flat} (cid: {fact.cid}){disputed}")
    return "\n".join(lines)
