"""Local search: a query answered from this node's own collections (``POST /v1/query`` with
scope local, and the local half of a network query, ``node.federator``).

Owns the steps around ranking: the query's checks (``check_query``, the vector's model CID),
the query vector (the caller's, normalised, or the text embedded through the scheduler's
query lane), ranking (``node.retrieval.Retriever.rank``, through ``node.workers.SearchRunner``:
on the event loop while the node is quiet, else on the search threads, never on the default
executor), each hit's proof when asked (``node.proofs``: provenance and any tombstone held),
and the LLM context.
Invariant: every mode's results carry their relevance, which decides what the context cites.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from node.embedding import EmbedScheduler
from node.facts import Fact
from node.keyword_stats import QueryTerms
from node.kinds import decode_record
from node.model_identity import ModelDescription, check_query_model
from node.ports import AnchorBook, FetchAnswer, PoolsAnswer
from node.proofs import HitProof, hit_proof_json
from node.results import QueryResult, ScoredFact
from node.retrieval import Retriever, check_query, results_context
from node.search import Query
from node.workers import SearchRunner


class ServedFacts(AnchorBook, Protocol):
    def is_hidden(self, cid: str) -> bool: ...


class Tombstones(Protocol):
    def tombstone_cids(self, cids: Sequence[str]) -> dict[str, str]: ...


class LocalSearch:
    def __init__(
        self,
        retriever: Retriever,
        scheduler: EmbedScheduler,
        catalog: ServedFacts,
        tombstones: Tombstones,
        model: ModelDescription,
        model_cid: str,
        workers: SearchRunner,
    ) -> None:
        self._workers = workers
        self._retriever = retriever
        self._scheduler = scheduler
        self._catalog = catalog
        self._tombstones = tombstones
        self._model = model
        self._model_cid = model_cid

    async def query(self, query: Query) -> QueryResult:
        check_query(query)
        if query.model_cid is not None:  # the vector's model, as the client says
            check_query_model(query.model_cid, self._model, self._model_cid)
        embed_ms = 0.0
        vector: np.ndarray | None = None
        if query.vector is not None:
            vector = self._retriever.query_vector(query.vector)
        else:
            t0 = time.perf_counter()
            vector = (await self._scheduler.embed_query([query.text]))[0]
            embed_ms = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        results = await self._workers.run(self._retriever.rank, query, vector)
        if query.proofs and results:
            cids = [r.fact.cid for r in results]
            proofs = await self._workers.run(self._hit_proofs, cids)
            results = [replace(r, proof=proofs.get(r.fact.cid)) for r in results]
        search_ms = (time.perf_counter() - t1) * 1000
        threshold = self._retriever.min_relevance(query)
        context = results_context(query.text, results, threshold)
        return QueryResult(results, context, threshold, embed_ms, search_ms)

    async def pools(
        self, query: Query, vector: np.ndarray, terms: QueryTerms, depth: int
    ) -> tuple[PoolsAnswer, dict[str, int]]:
        """``Retriever.pools`` through the search runner (phase one of a pooled network
        query)."""
        return await self._workers.run(self._retriever.pools, query, vector, terms, depth)

    async def rows(
        self, ids: Sequence[int], vector: np.ndarray, proofs: bool
    ) -> dict[int, ScoredFact]:
        """The facts of ``ids`` still held, as results with relevance and anchor, and with
        their proofs when ``proofs``."""

        def work() -> dict[int, ScoredFact]:
            found = self._retriever.materialize(ids, vector)
            if not proofs:
                return found
            attached = self._hit_proofs([r.fact.cid for r in found.values()])
            return {i: replace(r, proof=attached.get(r.fact.cid)) for i, r in found.items()}

        return await self._workers.run(work)

    async def proofs_of(self, cids: Sequence[str], collections: Sequence[str]) -> FetchAnswer:
        """Phase two of a peer's pooled query: the proof of each of ``cids`` that is a fact of
        one of ``collections`` this node serves (held, neither revoked nor hidden); the others
        left out."""

        def work() -> FetchAnswer:
            out = []
            for cid, proof in self._hit_proofs(cids).items():
                record = decode_record(proof.provenance.block)
                if (
                    proof.tombstone is None
                    and not self._catalog.is_hidden(cid)
                    and isinstance(record, Fact)
                    and record.collection in collections
                ):
                    out.append((cid, hit_proof_json(proof)))
            return FetchAnswer(tuple(out))

        return await self._workers.run(work)

    def _hit_proofs(self, cids: Sequence[str]) -> dict[str, HitProof]:
        tombstones = self._tombstones.tombstone_cids(cids)
        out = {}
        for cid in cids:
            found = self._catalog.provenance(cid)
            if found is not None:
                out[cid] = HitProof(found, tombstones.get(cid))
        return out
