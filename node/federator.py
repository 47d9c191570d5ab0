"""Federated retrieval, the flow: a query with scope ``network`` searched here and at peers,
and peers' requests answered here.

``Federator.query`` plans from the peer directory (``node.federation.plan_query``): held
collections are searched here, and one peer is asked per group of the others, all at once and
within the query's time budget. Then one of two paths:
- dense, or a text without keyword terms: one round (``_direct``). Every source's best k
  hits come with proofs; every remote hit is checked (``check_remote_hit``); the union is
  ranked by relevance (``merge``) with this node's curation; and the relevance of the
  remote hits that make the top k is recomputed with this node's model (``_settle``: the
  embedding scheduler's query lane, at most k texts a round);
- keyword and hybrid: two rounds, pools then proofs of what is shown (``node.pooled``).
Either way the answer reports ``completeness``. A peer whose answer is malformed, or holds a
hit that fails a check, is penalised (an offence in the network layer) and left out of
network queries for ``FederationOptions.penalty_seconds``.

``Federator.serve`` answers a peer's request: a query (its hits with proofs), pools (lean
candidates and term statistics) or a fetch (proofs of asked CIDs). A query or pools request
must name this node's model CID, and every request at least one collection this node holds;
only those collections are searched or served, by relevance, without curation.

Invariant: nothing a peer states decides an order or a threshold here unless this node has
checked it; see ``node.federation`` and ``node.pools``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from node.collections import Collections
from node.errors import (
    CollectionNotHeld,
    InvalidAnswer,
    KnowhubError,
    PeerRefused,
    PeerUnavailable,
)
from node.federation import (
    MAX_PEERS_PER_QUERY,
    CheckedHit,
    Plan,
    check_remote_hit,
    completeness,
    confirm_relevance,
    merge,
    plan_query,
    remote_result,
    wanted_collections,
)
from node.filters import MetadataFilter
from node.keyword_stats import DocTerms, QueryTerms
from node.limits import MAX_K
from node.model_identity import ModelDescription, check_query_model
from node.pooled import (
    MAX_SETTLE_ROUNDS,
    Embed,
    LocalPools,
    PooledQuery,
    PoolsRequest,
    RootsFor,
    named_roots,
    remote_query,
)
from node.pools import sendable_terms
from node.ports import (
    FactRef,
    FetchAnswer,
    FetchQuery,
    Network,
    PeerAnswer,
    PeerRequest,
    PoolsAnswer,
    PoolsQuery,
    RemoteAnswer,
    RemoteHit,
)
from node.proofs import RootLookup, hit_proof_json
from node.results import PeerOutcome, PeerReport, QueryResult, ScoredFact
from node.retrieval import Standings, check_query, curation_order, results_context
from node.roots import AnchorLog, RootCache
from node.search import Query, RankBy, Scope, SearchMode

log = logging.getLogger(__name__)


class LocalSide(LocalPools, Protocol):
    """This node's search as the federation uses it (``node.local_search.LocalSearch``)."""

    async def query(self, query: Query) -> QueryResult: ...

    async def proofs_of(self, cids: Sequence[str], collections: Sequence[str]) -> FetchAnswer: ...


@dataclass(frozen=True, slots=True)
class FederationOptions:
    #: Seconds a network query waits for peers (a query may ask for less).
    budget: float = 2.0
    #: Peers one network query asks at most.
    max_peers: int = MAX_PEERS_PER_QUERY
    #: Seconds a peer whose answer failed verification is left out of network queries.
    penalty_seconds: float = 600.0


class Federator:
    def __init__(
        self,
        *,
        local: LocalSide,
        query_vector: Callable[[tuple[float, ...]], np.ndarray],
        embed: Embed,
        network: Network | None,
        held: Collections,
        stored_collections: Callable[[], Sequence[str]],
        model: ModelDescription,
        model_cid: str,
        standings: Standings | None,
        roots_for: RootsFor | None,
        min_relevance: Callable[..., float],
        query_terms: Callable[[str], QueryTerms],
        text_terms: Callable[[Sequence[str], Sequence[str]], list[DocTerms]],
        pool_depth: Callable[[Query], int],
        options: FederationOptions | None = None,
    ) -> None:
        self._query_terms = query_terms
        self._pool_depth = pool_depth
        self._local = local
        self._pooled = PooledQuery(
            local=local,
            ask=self._ask,
            embed=embed,
            text_terms=text_terms,
            standings=standings,
            roots_for=roots_for,
            caught=self._caught,
        )
        self._query_vector = query_vector
        self._embed = embed
        self._network = network
        self._held = held
        self._stored = stored_collections
        self._model = model
        self._model_cid = model_cid
        self._standings = standings
        self._roots_for = roots_for
        self._min_relevance = min_relevance
        self.options = options or FederationOptions()
        self._penalised: dict[str, float] = {}

    # -- asking ------------------------------------------------------------------------------

    async def query(self, query: Query) -> QueryResult:
        check_query(query)  # min_score and budget included (scope network)
        if query.model_cid is not None and query.vector is not None:
            check_query_model(query.model_cid, self._model, self._model_cid)
        budget = self.options.budget
        if query.budget is not None:
            budget = min(budget, query.budget)
        t0 = time.perf_counter()
        embed_ms = 0.0
        if query.vector is not None:
            vector = self._query_vector(query.vector)
        else:
            vector = (await self._embed([query.text]))[0]
            embed_ms = (time.perf_counter() - t0) * 1000
        directory = [] if self._network is None else self._network.directory()
        wanted = wanted_collections(query.collections, self._held.names, self._stored(), directory)
        now = time.monotonic()
        excluded = frozenset(p for p, until in self._penalised.items() if until > now)
        plan = plan_query(
            wanted, self._held.holds, directory, self._model_cid, excluded, self.options.max_peers
        )
        if self._network is None:
            off = {c: "networking is off on this node" for c in wanted if not self._held.holds(c)}
            plan = Plan(plan.local, {}, off)
        t1 = time.perf_counter()
        terms = (
            () if query.mode is SearchMode.DENSE else sendable_terms(self._query_terms(query.text))
        )
        if terms:  # BM25 needs the union's statistics: two phases (node.pools)
            request = PoolsRequest(
                query, vector, terms, self._pool_depth(query), plan, budget, self._model_cid
            )
            merged, reports = await self._pooled.run(request)
        else:  # cosine is global: each source's best k hold the union's
            merged, reports = await self._direct(query, vector, plan, budget)
        if not query.proofs:  # a peer's proof travels on only when the query asked for proofs
            merged = [
                r if r.remote_proof is None else replace(r, remote_proof=None) for r in merged
            ]
        threshold = self._min_relevance(query)
        search_ms = (time.perf_counter() - t1) * 1000
        return QueryResult(
            merged,
            results_context(query.text, merged, threshold),
            threshold,
            embed_ms,
            search_ms,
            completeness(plan, reports),
        )

    async def _direct(
        self, query: Query, vector: np.ndarray, plan: Plan, budget: float
    ) -> tuple[list[ScoredFact], list[PeerReport]]:
        """A dense network query (or one without keyword terms) in one round: every source's
        best k with proofs, merged by relevance."""
        values = tuple(vector.tolist())  # the unit query vector, for the local search and peers
        local_query = replace(
            query,
            scope=Scope.LOCAL,
            vector=values,
            model_cid=None,
            # unnamed: the node's own default (what it holds), which costs no id read per query
            collections=None if query.collections is None else plan.local,
        )
        remote = remote_query(query, values, self._model_cid, query.k)
        local_task = self._local_results(local_query) if plan.local else _no_results()
        asks = [
            self._ask(peer, replace(remote, collections=names), budget)
            for peer, names in plan.asks.items()
        ]
        local, answers = await asyncio.gather(local_task, asyncio.gather(*asks))
        checked = await self._check(
            [(r, a if isinstance(a, RemoteAnswer) else None) for r, a in answers], query.filter
        )
        return await self._settle(vector, local, checked, query)

    async def _local_results(self, query: Query) -> list[ScoredFact]:
        return (await self._local.query(query)).results

    async def _ask(
        self, peer: str, query: PeerRequest, budget: float
    ) -> tuple[PeerReport, PeerAnswer | None]:
        assert self._network is not None
        t0 = time.perf_counter()
        outcome, reason, answer = PeerOutcome.ANSWERED, None, None
        try:
            answer = await self._network.ask(peer, query, budget)
        except PeerUnavailable as exc:
            outcome = PeerOutcome.TIMEOUT if exc.timeout else PeerOutcome.UNREACHABLE
            reason = exc.message
        except PeerRefused as exc:
            outcome, reason = PeerOutcome.REFUSED, exc.reason
        except InvalidAnswer as exc:
            outcome, reason = PeerOutcome.INVALID, exc.message
            self._penalise(peer, exc.message, already_counted=True)
        except KnowhubError as exc:
            outcome, reason = PeerOutcome.UNREACHABLE, exc.message
        ms = (time.perf_counter() - t0) * 1000
        asked = query.query.collections if isinstance(query, PoolsQuery) else query.collections
        report = PeerReport(peer, asked, outcome, ms=round(ms, 3), reason=reason)
        if isinstance(answer, (RemoteAnswer, PoolsAnswer)):
            extra = set(answer.searched) - set(asked)
            if extra:
                why = f"says it searched {sorted(extra)[:4]}, which were not asked"
                return self._caught(report, [why]), None
            report = replace(report, searched=answer.searched)
        return report, answer

    async def _check(
        self,
        answers: Sequence[tuple[PeerReport, RemoteAnswer | None]],
        query_filter: MetadataFilter | None,
    ) -> list[tuple[PeerReport, list[CheckedHit]]]:
        """Every answer's hits through ``check_remote_hit``; a peer with one failing hit is
        penalised and keeps none."""
        roots = await named_roots(
            self._roots_for, (h.proof for _, a in answers if a is not None for h in a.hits)
        )
        out: list[tuple[PeerReport, list[CheckedHit]]] = []
        for report, answer in answers:
            passed: list[CheckedHit] = []
            failures: list[str] = []
            for hit in answer.hits if answer is not None else ():
                got = check_remote_hit(hit, report.searched, query_filter, roots)
                if got is None:
                    continue
                if isinstance(got, str):
                    failures.append(f"{hit.cid[:80]}: {got}")
                else:
                    passed.append(got)
            if failures:
                out.append((self._caught(report, failures), []))
            else:
                out.append((replace(report, hits=len(passed)), passed))
        return out

    async def _settle(
        self,
        vector: np.ndarray,
        local: list[ScoredFact],
        checked: list[tuple[PeerReport, list[CheckedHit]]],
        query: Query,
    ) -> tuple[list[ScoredFact], list[PeerReport]]:
        """The top k of local and remote hits, every remote one in it with its relevance
        recomputed here (``confirm_relevance``): rank with the peers' numbers, recompute
        those of the remote hits that made the top k, and again until the top k holds only
        recomputed ones; a peer caught on one hit loses all of them. Only what is shown is
        embedded again: at most k texts a round, usually one round, at most
        ``MAX_SETTLE_ROUNDS`` (then the remote hits not recomputed are left out)."""
        reports = {report.peer_id: report for report, _ in checked}
        hits = {report.peer_id: passed for report, passed in checked}
        stated = {(peer, h.fact.cid): h for peer, passed in hits.items() for h in passed}
        recomputed: dict[tuple[str, str], float] = {}
        for round_ in range(MAX_SETTLE_ROUNDS + 1):
            remote = [
                remote_result(h, recomputed.get((peer, h.fact.cid), h.claimed_relevance), peer)
                for peer, passed in hits.items()
                for h in passed
                if round_ < MAX_SETTLE_ROUNDS or (peer, h.fact.cid) in recomputed
            ]
            ranked = self._rerank(merge(local, remote, query.mode), query)[: query.k]
            todo = [
                r
                for r in ranked
                if r.source is not None and (r.source, r.fact.cid) not in recomputed
            ]
            if not todo:
                return ranked, list(reports.values())
            cosines = (await self._embed([r.fact.text for r in todo])) @ vector  # <= k texts
            for r, cosine in zip(todo, cosines.tolist(), strict=True):
                assert r.source is not None
                recomputed[(r.source, r.fact.cid)] = float(cosine)
                wrong = confirm_relevance(
                    stated[(r.source, r.fact.cid)].claimed_relevance, float(cosine)
                )
                if wrong is not None and hits[r.source]:
                    reports[r.source] = self._caught(
                        reports[r.source], [f"{r.fact.cid}: {wrong}"], len(hits[r.source])
                    )
                    hits[r.source] = []
        return [], list(reports.values())  # not reached: the last round adds nothing new

    def _caught(self, report: PeerReport, failures: list[str], passed: int = 0) -> PeerReport:
        """A peer whose hits failed a check: penalised, its report says why."""
        self._penalise(report.peer_id, failures[0])
        return replace(
            report,
            outcome=PeerOutcome.INVALID,
            hits=0,
            rejected=len(failures) + passed,
            reason=f"{len(failures)} hits failed verification: {failures[0]}"[:300],
        )

    def _rerank(self, results: list[ScoredFact], query: Query) -> list[ScoredFact]:
        """This node's curation over the merged list (relevance order): standings for the
        remote hits, the ``min_reputation`` floor, and the reputation order when asked."""
        if self._standings is None:
            return results
        need = [r for r in results if r.standing is None]
        if need:
            weighed = self._standings([FactRef(r.fact.cid, r.fact.contributor) for r in need])
            by_cid = {r.fact.cid: s for r, s in zip(need, weighed, strict=True)}
            results = [
                r if r.standing is not None else replace(r, standing=by_cid[r.fact.cid])
                for r in results
            ]
        weighed = [r.standing for r in results if r.standing is not None]
        assert len(weighed) == len(results)  # every result weighed above
        order = curation_order(weighed, query)
        return [results[n] for n in order]

    def _penalise(self, peer: str, reason: str, *, already_counted: bool = False) -> None:
        log.warning("peer %s failed a federated query: %s", peer, reason)
        self._penalised[peer] = time.monotonic() + self.options.penalty_seconds
        if len(self._penalised) > 4096:
            now = time.monotonic()
            self._penalised = {p: t for p, t in self._penalised.items() if t > now}
        if not already_counted and self._network is not None:
            self._network.penalise(peer, f"federated query: {reason}")

    # -- answering ---------------------------------------------------------------------------

    async def serve(self, request: PeerRequest, peer: str) -> PeerAnswer:
        """A peer's query, pools or fetch, answered here (see the module docstring)."""
        if isinstance(request, FetchQuery):
            return await self._local.proofs_of(request.cids, self._held_of(request.collections))
        query = request.query if isinstance(request, PoolsQuery) else request
        check_query_model(query.model_cid, self._model, self._model_cid)
        local = Query(
            text=query.text,
            k=min(query.k, MAX_K),
            mode=query.mode,
            filter=query.filter,
            vector=query.vector,
            include_superseded=query.include_superseded,
            proofs=True,
            rank=RankBy.RELEVANCE,
            collections=self._held_of(query.collections),
        )
        if isinstance(request, PoolsQuery):
            vector = self._query_vector(query.vector)
            answer, _ = await self._local.pools(local, vector, request.terms, query.k)
            return answer
        result = await self._local.query(local)
        return RemoteAnswer(
            searched=local.collections or (),
            # a hit without its proof or relevance (erased or re-indexed meanwhile) would only
            # be dropped by the asker: it is left out here
            hits=tuple(
                RemoteHit(r.fact.cid, r.score, r.relevance, hit_proof_json(r.proof))
                for r in result.results
                if r.proof is not None and r.relevance is not None
            ),
        )

    def _held_of(self, asked: Sequence[str]) -> tuple[str, ...]:
        """The asked collections this node holds; ``CollectionNotHeld`` when none."""
        held = tuple(c for c in asked if self._held.holds(c))
        if not held:
            raise CollectionNotHeld(
                f"this node holds none of {', '.join(asked)} (it holds {self._held.describe()})"
            )
        return held


async def _no_results() -> list[ScoredFact]:
    return []


class ChainRoots:
    """``RootsFor`` on a chain: a root cache (``node.roots.RootCache``) read further from the
    registry's events only when remote hits name a root it lacks. When the chain cannot be
    read, anchors go unchecked (None): the hits are then at best pending, and no peer is
    blamed for this node's RPC being down."""

    def __init__(self, cache: RootCache, log: AnchorLog) -> None:
        self._cache = cache
        self._log = log
        self._refreshing = threading.Lock()

    def __call__(self, named: set[bytes]) -> RootLookup | None:
        """The cache, read further first when it lacks a named root and no other query is
        reading the chain already (that one's result serves the next queries: a query never
        waits for another's refresh). A root still unknown afterwards makes its hit pending
        (``check_remote_hit``), never a fault of the peer: this node's view may lag."""
        if any(self._cache.get(root) is None for root in named):
            if not self._refreshing.acquire(blocking=False):
                return self._cache
            try:
                self._cache.refresh(self._log)
            except KnowhubError:
                log.warning("chain unreadable: remote anchors go unchecked", exc_info=True)
                return None
            finally:
                self._refreshing.release()
        return self._cache


def federation_roots(ledger: AnchorLog, data_dir: Path) -> RootCache:
    """The root cache remote hits are checked against: one file in the data dir."""
    return RootCache(ledger.chain_id, ledger.registry, data_dir / "federation-roots.json")
