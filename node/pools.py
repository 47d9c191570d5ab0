"""Two-phase federated keyword and hybrid query, the pure part: the fusion of every source's
candidate pools as one node holding all of them would rank, and the checks of a fetched
candidate against what its source stated.

Dense ranking needs no second phase: cosine is comparable across nodes of one model, so each
source's best k hold the union's best k (``node.federator`` asks for hits directly). BM25 is
not: its idf and mean length belong to the corpus. So a keyword or hybrid network query asks
each source (this node and every peer asked, ``node.federator``) for its pools: its best
``depth`` per ranker with, per candidate, the stated relevance, contributor, length and query
term frequencies, and the term statistics of its searched collections (``PoolsAnswer``).
``fuse`` sums the statistics, scores every keyword candidate with BM25 over the sums
(``node.keyword_stats``), takes the best ``depth`` of each ranker over all sources and fuses
them as ``node.retrieval.Retriever`` fuses a local search (reciprocal-rank fusion). The asker
then fetches the proofs of the candidates it shows, and nothing else.

Invariants:
- Dense: the union's best ``depth`` by cosine lie within the sources' best ``depth``, so that
  ranking is the whole corpus's. Keyword: each source picks its pool by its own BM25, whose
  idf and mean length are its own; the union's order over the candidates is the whole
  corpus's (summed statistics), and it holds the corpus's best ``depth`` whenever each
  source's best ``depth`` by its own statistics hold its facts among them: always when a
  source has at most ``depth`` matches, nearly always when the sources' statistics are
  alike. Then, with ``depth`` a local search's pool, the fused order is a local search's over
  the union of the sources' collections, but for the order among equal scores.
- A candidate is shown only after ``check_fetched`` confirmed every number it was ranked by:
  relevance (recomputed here, ``RELEVANCE_TOLERANCE``), length and term frequencies
  (recomputed here exactly), contributor and collection. A source's term statistics cannot
  be checked (no proof of a count): they are bounded (``TermStats.fault``) and summed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from node.federation import confirm_relevance
from node.keyword_stats import DocTerms, QueryTerms, bm25_scores, total_stats
from node.limits import MAX_QUERY_TERMS, MAX_TERM_BYTES, MAX_TERM_WEIGHT
from node.ports import PoolEntry, PoolsAnswer
from node.search import Hit, SearchMode, reciprocal_rank_fusion

#: A source: a peer id, or None for this node.
Source = str | None


@dataclass(frozen=True, slots=True)
class Candidate:
    """One candidate of the fused order: where it came from, what it stated, its score in
    the mode's scale (BM25 over the summed statistics, or the fusion's)."""

    source: Source
    entry: PoolEntry
    score: float


def sendable_terms(terms: QueryTerms) -> QueryTerms:
    """The query terms a pools request carries (``node.limits``): at most ``MAX_QUERY_TERMS``
    of at most ``MAX_TERM_BYTES`` bytes each, weights capped at ``MAX_TERM_WEIGHT``. A longer
    term (a word of over 64 bytes) is left out of a network query's keyword ranking."""
    kept = [
        (term, min(weight, MAX_TERM_WEIGHT))
        for term, weight in terms
        if 0 < len(term.encode("utf-8", "surrogatepass")) <= MAX_TERM_BYTES
    ]
    return tuple(kept[:MAX_QUERY_TERMS])


def fuse(
    sources: Mapping[Source, PoolsAnswer],
    terms: QueryTerms,
    mode: SearchMode,
    depth: int,
    relevance: Mapping[tuple[Source, str], float] | None = None,
) -> list[Candidate]:
    """Every source's candidates in the order a local search of ``mode`` over their union
    gives (keyword or hybrid): dense by relevance (``relevance`` overrides a stated one, by
    source and CID), keyword by BM25 over the summed statistics, each cut to ``depth``, fused
    by reciprocal rank in hybrid. Every candidate enters both rankings, whichever pool it came
    in (its numbers are true or its source is caught when it is shown): more true candidates
    only bring the union's ranks nearer the whole corpus's. A CID stated by two sources counts
    once (the first in ``sources``' order; a source that shadows another's fact is caught when
    it is fetched, and the fusion runs again without it)."""
    known = relevance or {}
    pool: list[tuple[Source, PoolEntry]] = []
    seen: set[str] = set()
    for source, answer in sources.items():
        for entry in answer.entries:
            if entry.cid not in seen:
                seen.add(entry.cid)
                pool.append((source, entry))
    stats = total_stats([a.stats for a in sources.values()], len(terms))
    weights = [w for _, w in terms]
    scores = bm25_scores(weights, stats, [e.terms for _, e in pool])
    keyword = sorted(
        (Hit(n, s) for n, s in enumerate(scores) if s > 0.0),
        key=lambda h: (-h.score, pool[h.id][1].cid),
    )[:depth]
    if mode is SearchMode.KEYWORD:
        order = keyword
    else:
        dense = sorted(
            (Hit(n, known.get((s, e.cid), e.relevance)) for n, (s, e) in enumerate(pool)),
            key=lambda h: (-h.score, pool[h.id][1].cid),
        )[:depth]
        order = dense if mode is SearchMode.DENSE else reciprocal_rank_fusion([dense, keyword])
    return [Candidate(pool[h.id][0], pool[h.id][1], h.score) for h in order]


def check_fetched(
    entry: PoolEntry,
    contributor: str | None,
    collection: str,
    searched: Sequence[str],
    terms: DocTerms,
    relevance: float,
) -> str | None:
    """Why a fetched fact (its verified block's ``contributor`` and ``collection``, its
    ``terms`` and ``relevance`` recomputed here) contradicts what its source stated in its
    pools, or None."""
    if contributor != entry.contributor:
        return f"stated contributor {entry.contributor}, the block's is {contributor}"
    if collection not in searched:
        return f"fact of collection {collection!r}, which the peer did not say it searched"
    if terms != entry.terms:
        return (
            f"stated length {entry.terms.length} and term counts {list(entry.terms.tf)[:8]}, "
            f"the text has {terms.length} and {list(terms.tf)[:8]}"
        )
    return confirm_relevance(entry.relevance, relevance)
