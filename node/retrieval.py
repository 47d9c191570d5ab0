"""Retrieval: the search rules run against the catalog and the vector index.

``Retriever`` ranks a checked query (dense, keyword or hybrid with reciprocal rank fusion),
leaves out facts a newer version by their contributor replaces unless asked for them (inside
each ranker, so the k results are the best current ones), de-duplicates identical texts,
honours ``min_score``, searches only the query's collections (by default those the node holds;
inside each ranker, like a metadata filter) and deepens its candidate pool until it has ``k``
results or nothing deeper can qualify; then it gives each result its ``relevance`` (the dense
cosine with the query vector, whichever ranker found it: ``node.search``). A query vector,
when there is one, drives the dense ranking only in dense and hybrid modes; in keyword mode it
serves relevance alone. Its methods block (SQLite, FAISS): the service calls them from a worker
thread. ``check_query`` holds a query to ``node.limits`` before any work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from node.collections import Collections
from node.errors import InvalidFact, InvalidQuery
from node.facts import check_collection, has_visible_character
from node.keyword_stats import QueryTerms
from node.limits import (
    MAX_EF,
    MAX_K,
    MAX_POOL_DEPTH,
    MAX_QUERY_BUDGET_SECONDS,
    MAX_QUERY_BYTES,
    MAX_QUERY_COLLECTIONS,
)
from node.ports import (
    ContributorBook,
    Embedder,
    FactRef,
    FactSearch,
    Ids,
    KeywordIndex,
    PoolEntry,
    PoolsAnswer,
    VectorIndex,
)
from node.results import ScoredFact, Standing
from node.search import (
    DEFAULT_MIN_RELEVANCE,
    REPUTATION_POOL,
    ContextFact,
    Hit,
    Query,
    Scope,
    SearchMode,
    curated_order,
    curation_reorders,
    format_context,
    reciprocal_rank_fusion,
)

#: What curation says about facts at query time (``node.curation.Curation.standing``).
Standings = Callable[[Sequence[FactRef]], list[Standing]]


class RetrievalCatalog(FactSearch, ContributorBook, Protocol):
    """The catalog roles retrieval uses."""


@dataclass(frozen=True, slots=True)
class RetrievalOptions:
    #: Candidates taken from each ranker before fusion / de-duplication.
    candidate_pool: int = 100
    #: The context threshold on relevance when a query does not name one.
    min_relevance: float = DEFAULT_MIN_RELEVANCE


class Retriever:
    def __init__(
        self,
        catalog: RetrievalCatalog,
        index: VectorIndex,
        keywords: KeywordIndex,
        embedder: Embedder,
        options: RetrievalOptions | None = None,
        standing: Standings | None = None,
        collections: Collections | None = None,
    ) -> None:
        self._standing = standing
        self._held = collections or Collections()
        #: Whether the catalog stores facts of collections this node does not hold (only facts
        #: from before it narrowed its collections can be: the write paths store no others, so
        #: once False it stays False; a True outliving erasures only keeps an exact, slower
        #: restriction). None: not looked at yet.
        self._outside_held: bool | None = None
        self._catalog = catalog
        self._index = index
        self._keywords = keywords
        self._embedder = embedder
        self.options = options or RetrievalOptions()

    def min_relevance(self, query: Query) -> float:
        """The context threshold of ``query``: its own, else the node's."""
        chosen = query.min_relevance
        return self.options.min_relevance if chosen is None else chosen

    def query_vector(self, values: tuple[float, ...]) -> np.ndarray:
        # float64: float32 overflows to inf on the norm of 384 x 3e38 and scores all 0
        vector = np.asarray(values, dtype=np.float64)
        if vector.shape != (self._embedder.dimension,):
            raise InvalidQuery(
                f"vector must have {self._embedder.dimension} numbers "
                f"(the node's model is {self._embedder.model_name}), got {len(values)}"
            )
        if not np.isfinite(vector).all():
            raise InvalidQuery("vector must hold finite numbers")
        norm = float(np.linalg.norm(vector))
        if not (np.isfinite(norm) and norm > 0.0):
            raise InvalidQuery("vector must be finite and not all zero")
        unit = vector / norm
        if not np.isfinite(unit).all() or not np.any(unit.astype(np.float32)):
            raise InvalidQuery("vector is too close to zero to give a direction")
        result: np.ndarray = unit.astype(np.float32)
        return result

    def rank(self, query: Query, vector: np.ndarray | None) -> list[ScoredFact]:
        """The k best results of ``query``, each with its relevance and standing."""
        if self._standing is None:
            return self._finish(self._collect(query, vector), vector)
        standings: dict[int, Standing] = {}
        if not curation_reorders(query.min_reputation, query.rank):
            # curation only labels the results: weigh the k rows read anyway, instead of a
            # catalog read of the whole pool before them (~0.1 ms a query at 100k facts)
            results = self._collect(query, vector)
        else:
            results = self._collect(
                query, vector, lambda hits: self._curate(hits, query, standings)
            )
        # every result carries its standing, also one from beyond the weighed pool
        unweighed = [r.fact for r in results if r.fact.id not in standings]
        if unweighed:
            weighed = self._standing([FactRef(f.cid, f.contributor) for f in unweighed])
            standings.update((f.id, s) for f, s in zip(unweighed, weighed, strict=True))
        return self._finish(results, vector, standings)

    def pool_depth(self, query: Query) -> int:
        """How many candidates each ranker gives a fusion (hybrid's pool; a network query's
        pools, at most ``MAX_POOL_DEPTH``: the deepest a peer answers)."""
        return min(max(self.options.candidate_pool, 2 * query.k), MAX_POOL_DEPTH)

    def pools(
        self, query: Query, vector: np.ndarray, terms: QueryTerms, depth: int
    ) -> tuple[PoolsAnswer, dict[str, int]]:
        """Phase one of a federated keyword or hybrid query (``node.pools``): the best
        ``depth`` of each ranker the mode uses, among ``query.collections`` (the caller names
        held ones) under its filter and superseded rule, each with its relevance, contributor
        and keyword numbers for ``terms``; the statistics of every document of those
        collections for ``terms``; and each entry's row id by CID."""
        names = query.collections or ()
        words = [t for t, _ in terms]
        stored = self._catalog.collection_counts()
        whole = all(name in names for name in stored)  # every stored fact: no id read
        in_scope = None if whole else self._catalog.collection_ids(names)
        stats = self._keywords.term_stats(words, in_scope)
        # naming every stored collection restricts nothing: no per-query read of their ids
        allowed, excluded = self._restrictions(
            replace(query, collections=None) if whole else query, in_scope
        )
        if allowed is not None and len(allowed) == 0:
            return PoolsAnswer(names, stats, ()), {}
        dense: list[Hit] = []
        keyword: list[Hit] = []
        if query.mode is not SearchMode.KEYWORD:
            dense = self._index.search(vector, depth, allowed, excluded, ef=query.ef)
        if query.mode is not SearchMode.DENSE and terms:
            keyword = self._keywords.search(query.text, depth, allowed, excluded)
        in_dense = {h.id for h in dense}
        in_keyword = {h.id for h in keyword}
        ids = list(dict.fromkeys([h.id for h in dense] + [h.id for h in keyword]))
        refs = self._catalog.fact_refs(ids)
        ids = [i for i in ids if i in refs]
        if not ids:
            return PoolsAnswer(names, stats, ()), {}
        cosines = self._index.similarity(vector, np.asarray(ids, dtype=np.int64)).tolist()
        docs = self._keywords.doc_terms(words, np.asarray(ids, dtype=np.int64))
        entries = [
            PoolEntry(
                refs[i].cid,
                refs[i].contributor,
                round(float(cosine), 6),
                i in in_dense,
                i in in_keyword,
                doc,
            )
            for i, cosine, doc in zip(ids, cosines, docs, strict=True)
            if doc is not None and not math.isnan(cosine)
        ]
        return PoolsAnswer(names, stats, tuple(entries)), {refs[i].cid: i for i in ids}

    def materialize(self, ids: Sequence[int], vector: np.ndarray | None) -> dict[int, ScoredFact]:
        """The rows of ``ids`` the catalog still holds as results (score 0), each with its
        anchor and relevance."""
        rows = self._catalog.get_by_ids(list(ids))
        found = [ScoredFact(rows[i], 0.0) for i in ids if i in rows]
        return {r.fact.id: r for r in self._finish(found, vector)}

    def _curate(
        self, hits: list[Hit], query: Query, standings: dict[int, Standing]
    ) -> tuple[list[Hit], bool]:
        """The first ``k + REPUTATION_POOL`` hits weighed by curation (``node.curation``):
        re-ordered by ``rank_by_reputation`` (rank reputation), without the facts below
        ``min_reputation``, below ``min_score`` left out first (the order is no longer by
        score); each hit's standing lands in ``standings``. One narrow catalog read (CID and
        contributor per hit), no rows. Also whether a deeper search could change the answer
        no more: ``min_score`` cut the hits (deeper ones score lower), or a floor keeps to a
        full pool (it never takes a hit from beyond it)."""
        pool = query.k + REPUTATION_POOL
        head = hits[:pool]
        settled = query.min_reputation is not None and len(hits) >= pool
        if query.min_score is not None:
            lowest = query.min_score
            settled = settled or any(h.score < lowest for h in head)
            head = [h for h in head if h.score >= lowest]
        refs = self._catalog.fact_refs([h.id for h in head])
        head = [h for h in head if h.id in refs]
        assert self._standing is not None
        weighed = self._standing([refs[h.id] for h in head])
        order = curation_order(weighed, query)
        standings.update((head[n].id, weighed[n]) for n in order)
        # Beyond the pool, in the ranker's order (reached only when de-duplication eats the
        # pool); with a floor, nothing unweighed may pass.
        rest = [] if query.min_reputation is not None else hits[pool:]
        return [head[n] for n in order] + rest, settled

    def _collect(
        self,
        query: Query,
        vector: np.ndarray | None,
        curate: Callable[[list[Hit]], tuple[list[Hit], bool]] | None = None,
    ) -> list[ScoredFact]:
        """The first k distinct results in the mode's order, or in the order ``curate`` gives
        the hits (no relevance yet); deeper searches only while they could add a result."""
        # Fusion needs a deep pool from each ranker; a single ranker needs only a margin for
        # identical texts, and searches deeper when de-duplication eats it.
        hybrid = query.mode is SearchMode.HYBRID
        pool = max(self.options.candidate_pool, 2 * query.k) if hybrid else 2 * query.k + 10
        total = len(self._index)
        allowed, excluded = self._restrictions(query)
        if allowed is not None and len(allowed) == 0:
            return []
        while True:
            hits = self._candidates(query, vector, pool, allowed, excluded)
            chosen, settled = (hits, False) if curate is None else curate(hits)
            results, below_min_score = self._materialize(chosen, query)
            if len(results) >= query.k or below_min_score or settled:
                return results
            if len(hits) < pool or pool >= total:
                return results
            pool *= 4

    def _finish(
        self,
        results: list[ScoredFact],
        vector: np.ndarray | None,
        standings: dict[int, Standing] | None = None,
    ) -> list[ScoredFact]:
        """``results`` with their anchors, relevance and (from ``standings``) standing."""
        ids = [r.fact.id for r in results]
        anchored = self._catalog.anchored_blocks(ids)
        relevance: list[float | None] = [None] * len(results)
        if vector is not None and ids:
            cosines = self._index.similarity(vector, np.asarray(ids, dtype=np.int64))
            relevance = [None if math.isnan(c) else round(float(c), 6) for c in cosines.tolist()]
        weighed = {} if standings is None else standings
        return [
            replace(
                r,
                anchored_block=anchored.get(r.fact.id),
                relevance=rel,
                standing=weighed.get(r.fact.id, r.standing),
            )
            for r, rel in zip(results, relevance, strict=True)
        ]

    def _restrictions(
        self, query: Query, in_collections: Ids | None = None
    ) -> tuple[Ids | None, Ids | None]:
        """The ids a metadata filter and the collections allow (None: all) and the superseded
        ids left out (None: none), computed once per query and applied inside both rankers;
        ``in_collections``: the ids of the query's collections when the caller read them."""
        allowed = None if query.filter is None else self._catalog.filter_ids(query.filter)
        names = query.collections if query.collections is not None else self._held_only()
        if names is not None:
            if in_collections is None:
                in_collections = self._catalog.collection_ids(names)
            allowed = (
                in_collections
                if allowed is None
                else np.intersect1d(allowed, in_collections, assume_unique=True)
            )
        excluded = None if query.include_superseded else self._catalog.superseded_ids()
        if excluded is not None and len(excluded) == 0:
            excluded = None
        return allowed, excluded

    def _held_only(self) -> tuple[str, ...] | None:
        """The collections a query that names none is restricted to: the held ones, or None
        (no restriction) when the node holds all or the catalog stores nothing outside them,
        so the usual query pays no per-query read of every held fact's id."""
        if self._held.names is None:
            return None
        if self._outside_held is None:
            stored = self._catalog.collection_counts()
            self._outside_held = any(not self._held.holds(name) for name in stored)
        return tuple(sorted(self._held.names)) if self._outside_held else None

    def _candidates(
        self,
        query: Query,
        vector: np.ndarray | None,
        pool: int,
        allowed: Ids | None,
        excluded: Ids | None,
    ) -> list[Hit]:
        keyword: list[Hit] = []
        dense: list[Hit] = []
        if query.mode is not SearchMode.DENSE:
            keyword = self._keywords.search(query.text, pool, allowed, excluded)
        hybrid = query.mode is SearchMode.HYBRID
        if vector is not None and query.mode is not SearchMode.KEYWORD:
            # fusion reads only the dense ranks: a compressed index may rank by its codes
            # (each result's relevance is still the exact cosine, ``_finish``)
            dense = self._index.search(
                vector, pool, allowed, excluded, exact=not hybrid, ef=query.ef
            )
        if hybrid:
            return reciprocal_rank_fusion([dense, keyword])
        return dense if query.mode is SearchMode.DENSE else keyword

    def _materialize(self, hits: list[Hit], query: Query) -> tuple[list[ScoredFact], bool]:
        """The first k distinct texts among ``hits`` (rows fetched a chunk at a time), and
        whether the scores fell below ``min_score`` (nothing deeper can qualify then)."""
        seen: set[str] = set()
        out: list[ScoredFact] = []
        # k rows first (identical texts are rare: near-duplicates are never indexed), then
        # deeper chunks while de-duplication or min_score leave fewer than k
        start, size = 0, query.k
        while start < len(hits):
            chunk = hits[start : start + size]
            start, size = start + size, max(2 * query.k, 10)
            rows = self._catalog.get_by_ids([h.id for h in chunk])
            for hit in chunk:
                if query.min_score is not None and hit.score < query.min_score:
                    return out, True
                row = rows.get(hit.id)
                if row is None or row.text in seen:
                    continue
                seen.add(row.text)
                out.append(ScoredFact(row, hit.score))
                if len(out) == query.k:
                    return out, False
        return out, False


def curation_order(weighed: Sequence[Standing], query: Query) -> list[int]:
    """The order (indexes) ``node.search.curated_order`` gives hits in relevance order with
    these standings, under the query's ``min_reputation`` floor and ``rank``."""
    return curated_order(
        [s.reputation for s in weighed],
        [s.weight for s in weighed],
        query.min_reputation,
        query.rank,
    )


def results_context(text: str, results: Sequence[ScoredFact], min_relevance: float) -> str:
    """The LLM context of ranked results (``node.search.format_context``): the relevant
    ones, cited, each marked when trusted contributors dispute it."""
    return format_context(
        text,
        [
            ContextFact(
                r.fact.cid,
                r.fact.text,
                r.relevance,
                0 if r.standing is None else r.standing.trusted_disputes,
            )
            for r in results
        ],
        min_relevance,
    )


def check_query(query: Query) -> None:
    """``InvalidQuery`` unless the query is within ``node.limits`` and holds a visible
    character."""
    if not isinstance(query.text, str):
        raise InvalidQuery("query must be a string")
    try:
        size = len(query.text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidQuery("query is not valid Unicode (lone surrogate)") from exc
    if size > MAX_QUERY_BYTES:
        raise InvalidQuery(f"query is {size} bytes, over the limit of {MAX_QUERY_BYTES}")
    if not has_visible_character(query.text):
        raise InvalidQuery("query must hold a visible character")
    if query.model_cid is not None and query.vector is None:
        raise InvalidQuery(
            "model_cid names the model of a query vector: send it with `vector`, or leave it out",
            field="model_cid",
        )
    if not 1 <= query.k <= MAX_K:
        raise InvalidQuery(f"k must be between 1 and {MAX_K}, got {query.k}")
    _check_collections(query.collections)
    ef = query.ef
    if ef is not None and (type(ef) is not int or not 1 <= ef <= MAX_EF):
        raise InvalidQuery(f"ef must be a whole number from 1 to {MAX_EF}", field="ef")
    floor = query.min_reputation
    if floor is not None and not (math.isfinite(floor) and 0.0 <= floor <= 1.0):
        raise InvalidQuery(f"min_reputation must be between 0 and 1, got {floor}")
    if query.scope is Scope.NETWORK:
        if query.min_score is not None:
            raise InvalidQuery(
                "min_score is in the mode's own scale, and a network query merges by "
                "relevance: leave min_score out (min_relevance cuts the context)",
                field="min_score",
            )
        budget = query.budget
        if budget is not None and not 0.0 < budget <= MAX_QUERY_BUDGET_SECONDS:
            raise InvalidQuery(
                f"budget must be between 0 and {MAX_QUERY_BUDGET_SECONDS} seconds", field="budget"
            )


def _check_collections(names: object) -> None:
    if names is None:
        return
    if not isinstance(names, tuple) or len(names) > MAX_QUERY_COLLECTIONS:
        raise InvalidQuery(
            f"collections must be a list of at most {MAX_QUERY_COLLECTIONS} names",
            field="collections",
        )
    for name in names:
        try:
            check_collection(name, "collections")
        except InvalidFact as exc:
            raise InvalidQuery(exc.message, field="collections") from exc
