"""Pooled network queries, the flow: a keyword or hybrid query with scope ``network`` in two
phases (``node.pools`` has the pure part and the why; docs/protocol.md section 6c).

``PooledQuery.run`` asks this node (``LocalPools.pools``) and every planned peer (a
``PoolsQuery``) for their pools at once, within the query's budget; fuses them
(``node.pools.fuse``); applies this node's curation to the fused order as a local search does
(the first ``k + REPUTATION_POOL`` weighed by the stated contributors); then fetches what the
top ``k`` needs and it lacks: this node's rows, and each peer's proofs (a ``FetchQuery``).
Every fetched remote fact passes ``node.federation.check_remote_hit`` (proof, signature,
anchor, collection, filter) and ``node.pools.check_fetched`` (every stated number, with the
relevance embedded again and the term counts recomputed here). A peer caught on one fact,
or withholding a fact it stated (which would otherwise hold a place in the order without
ever being checked, or shadow another peer's copy), loses all its candidates, is penalised,
and the order is fused again without it; a peer whose fetch fails (timeout, refusal) loses
its candidates too, without penalty (its collections are then missing). Repeated at
most ``MAX_SETTLE_ROUNDS`` times (a round fetches only what the top k newly holds, usually
none after the first); then candidates still unfetched are left out.

Invariant: a result shown is a row of this node or a remote fact whose every stated number
was confirmed here; identical texts are shown once (the first in the order).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from node.cid import canonical_cid_or_none
from node.federation import CheckedHit, Plan, check_remote_hit, remote_result
from node.keyword_stats import DocTerms, QueryTerms
from node.pools import Candidate, Source, check_fetched, fuse
from node.ports import (
    FactRef,
    FetchAnswer,
    FetchQuery,
    PeerAnswer,
    PeerRequest,
    PoolsAnswer,
    PoolsQuery,
    RemoteHit,
    RemoteQuery,
)
from node.proofs import RootLookup, hex32_or_none
from node.results import PeerOutcome, PeerReport, ScoredFact, Standing
from node.retrieval import Standings, curation_order
from node.search import REPUTATION_POOL, Query, Scope

#: Rounds of confirming the remote hits a network query shows (fetching them here; in a
#: dense query, embedding them again), after which unconfirmed ones are left out: stated
#: numbers just within the tolerance could otherwise make the asker check every candidate.
MAX_SETTLE_ROUNDS = 3
#: Seconds a fetch gets at least, however little of the budget the pools left.
MIN_FETCH_SECONDS = 0.25

Key = tuple[Source, str]
Ask = Callable[[str, PeerRequest, float], Awaitable[tuple[PeerReport, PeerAnswer | None]]]
Embed = Callable[[Sequence[str]], Awaitable[np.ndarray]]
#: Anchored roots for remote hits: called (in a worker thread) with the roots the hits name,
#: it reads the chain for those it lacks (``node.federator.ChainRoots``); None: anchors go
#: unchecked.
RootsFor = Callable[[set[bytes]], RootLookup | None]


def remote_query(query: Query, values: tuple[float, ...], model_cid: str, k: int) -> RemoteQuery:
    """What peers are asked for ``query``: its text, filter and superseded rule, the unit
    query vector ``values`` of this node's model, ``k`` hits (or a pool of ``k`` per ranker);
    the collections are set per peer."""
    return RemoteQuery(
        text=query.text,
        vector=values,
        model_cid=model_cid,
        k=k,
        mode=query.mode,
        collections=(),
        filter=query.filter,
        include_superseded=query.include_superseded,
    )


async def named_roots(
    roots_for: RootsFor | None, proofs: Iterable[Mapping[str, Any]]
) -> RootLookup | None:
    """The anchored roots that ``proofs`` name, through ``roots_for`` in a worker thread;
    None when this node reads no chain or no proof names a root (an anchor claim then goes
    unchecked: the hit is at best pending, ``check_remote_hit``)."""
    named = {root for p in proofs if (root := hex32_or_none(p.get("root"))) is not None}
    if roots_for is None or not named:
        return None
    return await asyncio.to_thread(roots_for, named)


class LocalPools(Protocol):
    """This node's side (``node.local_search.LocalSearch``)."""

    async def pools(
        self, query: Query, vector: np.ndarray, terms: QueryTerms, depth: int
    ) -> tuple[PoolsAnswer, dict[str, int]]: ...

    async def rows(
        self, ids: Sequence[int], vector: np.ndarray, proofs: bool
    ) -> dict[int, ScoredFact]: ...


@dataclass(frozen=True, slots=True)
class PoolsRequest:
    """One pooled query as ``PooledQuery.run`` takes it."""

    query: Query
    vector: np.ndarray
    terms: QueryTerms
    depth: int
    plan: Plan
    budget: float
    model_cid: str


class PooledQuery:
    def __init__(
        self,
        *,
        local: LocalPools,
        ask: Ask,
        embed: Embed,
        text_terms: Callable[[Sequence[str], Sequence[str]], list[DocTerms]],
        standings: Standings | None,
        roots_for: RootsFor | None,
        caught: Callable[[PeerReport, list[str], int], PeerReport],
    ) -> None:
        self._local = local
        self._ask = ask
        self._embed = embed
        self._text_terms = text_terms
        self._standings = standings
        self._roots_for = roots_for
        self._caught = caught

    async def run(self, request: PoolsRequest) -> tuple[list[ScoredFact], list[PeerReport]]:
        """The top k of a pooled query and every asked peer's report (see the module)."""
        query, plan = request.query, request.plan
        deadline = time.monotonic() + request.budget
        state = _State(request)
        values = tuple(request.vector.tolist())
        remote = remote_query(query, values, request.model_cid, request.depth)
        local_query = replace(
            query, scope=Scope.LOCAL, vector=values, model_cid=None, collections=plan.local
        )
        local_task = (
            self._local.pools(local_query, request.vector, request.terms, request.depth)
            if plan.local
            else _nothing()
        )
        asks = [
            self._ask(
                peer, PoolsQuery(replace(remote, collections=names), request.terms), request.budget
            )
            for peer, names in plan.asks.items()
        ]
        local, answers = await asyncio.gather(local_task, asyncio.gather(*asks))
        if local is not None:
            state.sources[None], state.ids = local
        for report, answer in answers:
            state.reports[report.peer_id] = report
            if isinstance(answer, PoolsAnswer):
                state.sources[report.peer_id] = answer
        chosen: list[tuple[Candidate, Key]] = []
        standing: dict[Key, Standing] = {}
        for round_ in range(MAX_SETTLE_ROUNDS + 1):
            ordered, standing = await asyncio.to_thread(self._order, state)
            chosen, todo = state.pick(ordered, final=round_ == MAX_SETTLE_ROUNDS)
            if not todo:
                break
            await self._fetch(todo, state, deadline)
        results = [
            replace(state.shown[key], score=c.score, standing=standing.get(key))
            for c, key in chosen
        ]
        shown = [r.source for r in results]
        reports = [
            replace(r, hits=shown.count(r.peer_id)) if r.outcome is PeerOutcome.ANSWERED else r
            for r in state.reports.values()
        ]
        return results, reports

    def _order(self, state: _State) -> tuple[list[Candidate], dict[Key, Standing]]:
        """The sources' candidates fused and curated (pure work: in a worker thread)."""
        request = state.request
        fused = fuse(
            dict(state.sources),
            request.terms,
            request.query.mode,
            request.depth,
            dict(state.recomputed),
        )
        return self._curate(fused, request.query)

    def _curate(
        self, fused: list[Candidate], query: Query
    ) -> tuple[list[Candidate], dict[Key, Standing]]:
        """This node's curation of the fused order, as ``Retriever`` curates a local one."""
        if self._standings is None:
            return fused, {}
        head = fused[: query.k + REPUTATION_POOL]
        weighed = self._standings([FactRef(c.entry.cid, c.entry.contributor) for c in head])
        order = curation_order(weighed, query)
        standing = {(c.source, c.entry.cid): s for c, s in zip(head, weighed, strict=True)}
        rest = [] if query.min_reputation is not None else fused[query.k + REPUTATION_POOL :]
        return [head[n] for n in order] + rest, standing

    async def _fetch(self, todo: list[Candidate], state: _State, deadline: float) -> None:
        """This node's rows and each peer's proofs for ``todo``, checked into ``state``."""
        request = state.request
        by_peer: dict[str, list[Candidate]] = {}
        for c in todo:
            if c.source is not None:
                by_peer.setdefault(c.source, []).append(c)
        local_ids = [state.ids[c.entry.cid] for c in todo if c.source is None]
        budget = max(deadline - time.monotonic(), MIN_FETCH_SECONDS)
        asks = [
            self._ask(
                peer,
                # at most k: ``pick`` chooses no more, and k <= MAX_K, what a fetch names
                FetchQuery(tuple(c.entry.cid for c in cands), state.sources[peer].searched),
                budget,
            )
            for peer, cands in by_peer.items()
        ]
        rows, fetched = await asyncio.gather(
            self._local.rows(local_ids, request.vector, request.query.proofs)
            if local_ids
            else _no_rows(),
            asyncio.gather(*asks),
        )
        for c in todo:
            if c.source is None:
                row = rows.get(state.ids[c.entry.cid])
                if row is None:
                    state.gone.add((None, c.entry.cid))
                else:
                    state.shown[(None, c.entry.cid)] = row
        checked = await self._check(by_peer, fetched, state)
        await self._confirm(checked, state)

    async def _check(
        self,
        by_peer: dict[str, list[Candidate]],
        fetched: Sequence[tuple[PeerReport, PeerAnswer | None]],
        state: _State,
    ) -> list[tuple[str, Candidate, CheckedHit]]:
        """The fetched proofs that pass ``check_remote_hit``; a peer whose fetch failed, or
        with one failing proof, is dropped (and penalised for a failing proof)."""
        roots = await named_roots(
            self._roots_for,
            (p for _, a in fetched if isinstance(a, FetchAnswer) for _, p in a.proofs),
        )
        out: list[tuple[str, Candidate, CheckedHit]] = []
        for peer, (report, answer) in zip(by_peer, fetched, strict=True):
            if not isinstance(answer, FetchAnswer):
                failed = replace(
                    state.reports[peer],
                    outcome=report.outcome,
                    reason=f"fetching proofs: {report.reason}",
                )
                state.drop(peer, failed)
                continue
            wanted = {c.entry.cid: c for c in by_peer[peer]}
            searched = state.sources[peer].searched
            passed: list[tuple[str, Candidate, CheckedHit]] = []
            failures: list[str] = []
            for cid, proof in answer.proofs:
                key = canonical_cid_or_none(cid)
                c = None if key is None else wanted.pop(key, None)
                if c is None:  # the wire admits each asked CID once: a defence in depth
                    failures.append(f"{cid[:80]}: not asked, or sent twice")
                    continue
                hit = RemoteHit(cid, c.score, c.entry.relevance, proof)
                got = check_remote_hit(hit, searched, state.request.query.filter, roots)
                if isinstance(got, str):
                    failures.append(f"{cid[:80]}: {got}")
                elif got is not None:
                    passed.append((peer, c, got))
            if wanted:  # stated a moment ago, withheld now: its numbers cannot be checked
                failures.append(f"withheld {len(wanted)} facts it stated in its pools")
            if failures:
                state.drop(peer, self._caught(state.reports[peer], failures, 0))
                continue
            out.extend(passed)
        return out

    async def _confirm(
        self, checked: list[tuple[str, Candidate, CheckedHit]], state: _State
    ) -> None:
        """Each proven remote fact's stated numbers against this node's own (``check_fetched``);
        those confirmed become results."""
        if not checked:
            return
        request = state.request
        texts = [fact.fact.text for _, _, fact in checked]
        words = [t for t, _ in request.terms]
        terms = await asyncio.to_thread(self._text_terms, words, texts)
        cosines = ((await self._embed(texts)) @ request.vector).tolist()
        bad: dict[str, list[str]] = {}
        good: list[tuple[Key, ScoredFact, float]] = []
        for (peer, c, fact), counted, cosine in zip(checked, terms, cosines, strict=True):
            why = check_fetched(
                c.entry,
                fact.fact.contributor,
                fact.fact.collection,
                state.sources[peer].searched,
                counted,
                float(cosine),
            )
            if why is not None:
                bad.setdefault(peer, []).append(f"{c.entry.cid[:80]}: {why}")
            else:
                key: Key = (peer, c.entry.cid)
                good.append((key, remote_result(fact, float(cosine), peer), float(cosine)))
        for peer, failures in bad.items():
            state.drop(peer, self._caught(state.reports[peer], failures, 0))
        for key, result, cosine in good:
            if key[0] in state.sources:
                state.shown[key] = result
                state.recomputed[key] = cosine


class _State:
    """One pooled query's progress: sources still in, reports, what is fetched and known."""

    def __init__(self, request: PoolsRequest) -> None:
        self.request = request
        self.sources: dict[Source, PoolsAnswer] = {}
        self.ids: dict[str, int] = {}
        self.reports: dict[str, PeerReport] = {}
        self.shown: dict[Key, ScoredFact] = {}
        self.gone: set[Key] = set()
        self.recomputed: dict[Key, float] = {}

    def drop(self, peer: str, report: PeerReport) -> None:
        """Leave ``peer``'s candidates out from now on; ``report`` says why."""
        self.sources.pop(peer, None)
        self.reports[peer] = replace(report, hits=0)

    def pick(
        self, ordered: list[Candidate], *, final: bool
    ) -> tuple[list[tuple[Candidate, Key]], list[Candidate]]:
        """The first k of ``ordered`` with distinct texts (a candidate not fetched yet
        counts, and is to fetch; in the ``final`` round it is passed over), and those to
        fetch."""
        k = self.request.query.k
        texts: set[str] = set()
        chosen: list[tuple[Candidate, Key]] = []
        todo: list[Candidate] = []
        for c in ordered:
            key = (c.source, c.entry.cid)
            if key in self.gone:
                continue
            got = self.shown.get(key)
            if got is None:
                if final:
                    continue
                todo.append(c)
            elif got.fact.text in texts:
                continue
            else:
                texts.add(got.fact.text)
            chosen.append((c, key))
            if len(chosen) == k:
                break
        return chosen, todo


async def _nothing() -> None:
    return None


async def _no_rows() -> dict[int, ScoredFact]:
    return {}
