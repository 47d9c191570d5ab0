"""Pooled network queries (node.pools, node.pooled): a keyword or hybrid query over peers
ranks exactly as one node holding every collection ranks it, and every number a peer states
in its pools is checked before its fact is shown (forged term counts, contributor,
relevance, block; a fetch that fails or omits a fact).

Real memory nodes (with the memory keyword index and with the real BM25 index): the peers
answer through their real ``answer_query`` path; a scripted network in between lets a test
tamper with an honest answer the way a hostile peer would."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import dag_cbor
import numpy as np
import pytest

from index.bm25_index import Bm25Index
from node.collections import Collections
from node.errors import CollectionNotHeld
from node.facts import make_fact
from node.keyword_stats import DocTerms
from node.limits import MAX_POOL_DEPTH
from node.memory import HashEmbedder, MemoryKeywordIndex
from node.ports import (
    CollectionAdvert,
    DirectoryEntry,
    FetchAnswer,
    FetchQuery,
    KeywordIndex,
    PeerAnswer,
    PeerRequest,
    PoolEntry,
    PoolsAnswer,
    PoolsQuery,
    RemoteQuery,
    Vectors,
)
from node.results import PeerOutcome, ScoredFact
from node.retrieval import RetrievalOptions
from node.search import Query, Scope, SearchMode
from node.service import KnowledgeNode, NodeOptions
from node.signing import SigningKey
from tests.memory_nodes import memory_node
from tests.scripted_network import ScriptedNetwork

Handler = Callable[[PeerRequest], Awaitable[PeerAnswer]]
OPERATOR = SigningKey.generate()
ALICE = SigningKey.generate()
BOB = SigningKey.generate()
WORDS = [
    "blood",
    "heart",
    "lung",
    "oxygen",
    "cell",
    "gene",
    "protein",
    "virus",
    "bacteria",
    "immune",
    "brain",
    "neuron",
    "muscle",
    "bone",
    "liver",
    "kidney",
    "insulin",
    "glucose",
    "cancer",
    "tumor",
    "drug",
    "dose",
    "trial",
    "patient",
    "mouse",
    "human",
    "risk",
    "age",
    "diet",
    "exercise",
    "sleep",
    "stress",
]
COLLECTIONS = ("a", "b", "c")
QUERIES = (
    "blood oxygen in the lung",
    "cancer drug trial",
    "gene protein cell",
    "insulin glucose diet exercise",
    "immune virus bacteria in mouse",
    "sleep stress brain",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def corpus(seed: int = 7, n: int = 90) -> list[tuple[str, str]]:
    """(text, collection): word salads, each of its own length (so that idf and length
    matter, and two facts never tie on BM25: ties break by row id on one node, by CID across
    nodes)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = rng.choices(WORDS, k=3 + i)
        out.append((f"Fact {i}: " + " ".join(words) + ".", COLLECTIONS[i % 3]))
    return out


async def add(node: KnowledgeNode, text: str, collection: str, key: SigningKey = ALICE) -> str:
    fact = make_fact(text, None, key.address, collection=collection)
    signed = {
        "text": text,
        "metadata": None,
        "contributor": key.address,
        "signature": key.sign_cid(fact.cid),
        "collection": collection,
    }
    return (await node.contribute(node.accept(signed))).cid


class JitteredEmbedder(HashEmbedder):
    """Bag-of-words hashing plus a small fixed jitter per text: two facts almost never share a
    cosine with a query, so the dense order has no ties (which one node breaks by row id and
    a network query by CID)."""

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.asarray(super().embed(texts), dtype=np.float64)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            out[row] += 0.05 * np.random.default_rng(seed).standard_normal(self.dimension)
            out[row] /= np.linalg.norm(out[row])
        return out.astype(np.float32)


def keyword_index(kind: str) -> KeywordIndex:
    return Bm25Index() if kind == "bm25" else MemoryKeywordIndex()


class Net:
    """A central node holding everything; node ``a`` holding ``a`` and asking peers ``b`` and
    ``c`` (each holding its own) through a scripted network."""

    def __init__(self, tmp: Path, kind: str) -> None:
        self.net = ScriptedNetwork()
        self.nodes: dict[str, KnowledgeNode] = {}
        for name in ("central", *COLLECTIONS):
            held = COLLECTIONS if name == "central" else (name,)
            options = NodeOptions(data_dir=tmp / name, collections=Collections.of(held))
            self.nodes[name] = memory_node(
                tmp / name,
                OPERATOR,
                options=options,
                keywords=keyword_index(kind),
                network=self.net if name == "a" else None,
                embedder=JitteredEmbedder(),
            )

    async def start(self, facts: list[tuple[str, str]]) -> None:
        for node in self.nodes.values():
            await node.start()
        for text, collection in facts:
            await add(self.nodes["central"], text, collection)
            await add(self.nodes[collection], text, collection)
        asker = self.nodes["a"]
        self.net.entries = [
            DirectoryEntry(
                name, asker.model_cid, False, {name: CollectionAdvert(30, "00")}, 1.0, True
            )
            for name in ("b", "c")
        ]
        for name in ("b", "c"):
            self.net.answers[name] = self.honest(name)

    def honest(self, name: str) -> Handler:
        node = self.nodes[name]
        return lambda request: node._federator.serve(request, "a")

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.close()


@pytest.fixture(params=["memory", "bm25"])
async def net(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Net]:
    built = Net(tmp_path, request.param)
    await built.start(corpus())
    try:
        yield built
    finally:
        await built.close()


def query(text: str, mode: SearchMode, scope: Scope = Scope.NETWORK, **extra: Any) -> Query:
    return Query(text=text, k=10, mode=mode, scope=scope, **extra)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", [SearchMode.HYBRID, SearchMode.KEYWORD])
async def test_a_pooled_query_ranks_as_one_node_holding_everything(
    net: Net, mode: SearchMode
) -> None:
    for text in QUERIES:
        central = await net.nodes["central"].query(query(text, mode, Scope.LOCAL))
        federated = await net.nodes["a"].query(query(text, mode))
        assert same_ranking(federated.results, central.results)
        assert [r.relevance for r in federated.results] == pytest.approx(
            [r.relevance for r in central.results], abs=1e-5
        )
        c = federated.completeness
        assert c is not None and c.complete, c
        assert {r.fact.collection for r in central.results} - {"a"}, "a query needs peers"
    assert not net.net.penalties
    kinds = [type(r).__name__ for _, r in net.net.asked]
    assert set(kinds) == {"PoolsQuery", "FetchQuery"}


@pytest.mark.anyio
async def test_only_the_shown_candidates_are_fetched(net: Net) -> None:
    await net.nodes["a"].query(query(QUERIES[0], SearchMode.HYBRID))
    fetches = [r for _, r in net.net.asked if isinstance(r, FetchQuery)]
    pools = [r for _, r in net.net.asked if isinstance(r, PoolsQuery)]
    assert len(pools) == 2 and pools[0].query.k == 100  # the local pool depth
    assert 0 < sum(len(f.cids) for f in fetches) <= 10


def same_ranking(got: list[ScoredFact], want: list[ScoredFact]) -> bool:
    """The same scores in order, and the same facts but for the order among equal scores
    (ties break by catalog row id on one node, by CID across nodes) and which of those tied
    at the last score made the cut."""
    scores = [round(r.score, 9) for r in got]
    if scores != [round(r.score, 9) for r in want]:
        return False
    last = scores[-1] if scores else 0.0
    above = {r.fact.cid for r in got if round(r.score, 9) > last}
    return above == {r.fact.cid for r in want if round(r.score, 9) > last}


Tamper = Callable[[PoolEntry], PoolEntry]


def tamper_pools(honest: Handler, change: Tamper) -> Handler:
    """Every pool entry changed by ``change``; fetches answered honestly."""

    async def answering(request: PeerRequest) -> PeerAnswer:
        answer = await honest(request)
        if isinstance(answer, PoolsAnswer):
            return replace(answer, entries=tuple(change(e) for e in answer.entries))
        return answer

    return answering


def more_terms(entry: PoolEntry) -> PoolEntry:
    tf = tuple(t + 3 for t in entry.terms.tf)
    return replace(entry, terms=DocTerms(entry.terms.length + 3 * len(tf), tf))


def shorter(entry: PoolEntry) -> PoolEntry:
    return replace(entry, terms=replace(entry.terms, length=max(sum(entry.terms.tf), 1)))


def other_contributor(entry: PoolEntry) -> PoolEntry:
    return replace(entry, contributor=BOB.address)


def more_relevant(entry: PoolEntry) -> PoolEntry:
    return replace(entry, relevance=min(1.0, entry.relevance + 0.2))


@pytest.mark.anyio
@pytest.mark.parametrize(
    "change",
    [more_terms, shorter, other_contributor, more_relevant],
    ids=["tf", "length", "contributor", "relevance"],
)
async def test_a_peer_stating_false_numbers_is_caught(net: Net, change: Tamper) -> None:
    net.net.answers["b"] = tamper_pools(net.net.answers["b"], change)
    text = QUERIES[1]
    result = await net.nodes["a"].query(query(text, SearchMode.HYBRID))
    assert all(r.source != "b" for r in result.results)
    c = result.completeness
    assert c is not None and not c.complete and c.missing == ("b",)
    report = next(p for p in c.peers if p.peer_id == "b")
    assert report.outcome is PeerOutcome.INVALID and report.hits == 0
    assert net.net.penalties and net.net.penalties[0][0] == "b"
    # what is shown is the honest ranking without b's collection
    central = await net.nodes["central"].query(
        query(text, SearchMode.HYBRID, Scope.LOCAL, collections=("a", "c"))
    )
    # (b's statistics still weighed the first fusion; the order without b is close, and every
    # shown fact is one of a and c)
    assert {r.fact.collection for r in result.results} <= {"a", "c"}
    assert len(result.results) == len(central.results)


def forge_block(honest: Handler) -> Handler:
    async def answering(request: PeerRequest) -> PeerAnswer:
        answer = await honest(request)
        if not isinstance(answer, FetchAnswer):
            return answer
        forged = []
        for cid, proof in answer.proofs:
            record = dag_cbor.decode(base64.b64decode(proof["block"]))
            assert isinstance(record, dict)
            block = dag_cbor.encode({**record, "text": "Blood is green."})
            forged.append((cid, {**proof, "block": base64.b64encode(block).decode()}))
        return FetchAnswer(tuple(forged))

    return answering


@pytest.mark.anyio
async def test_a_forged_block_in_a_fetch_is_caught(net: Net) -> None:
    net.net.answers["c"] = forge_block(net.net.answers["c"])
    result = await net.nodes["a"].query(query(QUERIES[2], SearchMode.HYBRID))
    assert all(r.source != "c" for r in result.results)
    report = next(p for p in result.completeness.peers if p.peer_id == "c")  # type: ignore[union-attr]
    assert report.outcome is PeerOutcome.INVALID
    assert "block hashes" in (report.reason or "") or "CID" in (report.reason or "")
    assert [p for p, _ in net.net.penalties] == ["c"]


@pytest.mark.anyio
async def test_a_fetch_that_times_out_leaves_the_collection_missing(net: Net) -> None:
    honest: Handler = net.net.answers["b"]

    async def slow_fetch(request: PeerRequest) -> PeerAnswer:
        if isinstance(request, FetchQuery):
            await asyncio.sleep(3600)
        return await honest(request)

    net.net.answers["b"] = slow_fetch
    result = await net.nodes["a"].query(query(QUERIES[1], SearchMode.HYBRID, budget=0.5))
    c = result.completeness
    assert c is not None and c.missing == ("b",)
    report = next(p for p in c.peers if p.peer_id == "b")
    assert report.outcome is PeerOutcome.TIMEOUT and "fetching proofs" in (report.reason or "")
    assert all(r.source != "b" for r in result.results)
    assert not net.net.penalties  # slow is not an offence


@pytest.mark.anyio
async def test_a_peer_withholding_a_fact_it_stated_is_caught(net: Net) -> None:
    """Stating great numbers and never proving them would hold places in the order forever
    (or shadow another peer's copy): the peer is caught, and the order fused without it."""
    honest: Handler = net.net.answers["b"]
    withheld: list[str] = []

    async def withholding(request: PeerRequest) -> PeerAnswer:
        answer = await honest(request)
        if isinstance(answer, FetchAnswer) and answer.proofs:
            withheld.append(answer.proofs[0][0])
            return FetchAnswer(answer.proofs[1:])
        return answer

    net.net.answers["b"] = withholding
    result = await net.nodes["a"].query(query(QUERIES[1], SearchMode.HYBRID))
    assert withheld and [p for p, _ in net.net.penalties] == ["b"]
    report = next(p for p in result.completeness.peers if p.peer_id == "b")  # type: ignore[union-attr]
    assert report.outcome is PeerOutcome.INVALID and "withheld 1 facts" in (report.reason or "")
    assert len(result.results) == 10 and all(r.source != "b" for r in result.results)


@pytest.mark.anyio
async def test_a_peer_shadowing_another_peers_fact_cannot_hide_it(net: Net) -> None:
    """b states c's best facts as its own, first in the plan; withheld or served, b is
    caught and c's facts come back."""
    honest_b: Handler = net.net.answers["b"]
    serve_c: Handler = net.net.answers["c"]
    text = QUERIES[2]
    central = await net.nodes["central"].query(query(text, SearchMode.HYBRID, Scope.LOCAL))
    c_best = [r.fact.cid for r in central.results if r.fact.collection == "c"]
    assert c_best

    async def shadowing(request: PeerRequest) -> PeerAnswer:
        answer = await honest_b(request)
        if isinstance(answer, PoolsAnswer) and isinstance(request, PoolsQuery):
            asked_c = replace(request.query, collections=("c",))
            stolen = await serve_c(replace(request, query=asked_c))
            assert isinstance(stolen, PoolsAnswer)
            return replace(answer, entries=stolen.entries + answer.entries)
        return answer  # a fetch: b holds none of the stolen facts, so it withholds them

    net.net.answers["b"] = shadowing
    # b's advert is the fresher: b is asked first, and its copy of each CID shadows c's
    net.net.entries = [replace(e, seen_at=2.0) if e.peer_id == "b" else e for e in net.net.entries]
    result = await net.nodes["a"].query(query(text, SearchMode.HYBRID))
    assert "b" in {p for p, _ in net.net.penalties}
    shown = {r.fact.cid: r.source for r in result.results}
    assert all(shown.get(cid) == "c" for cid in c_best if cid in shown)
    assert any(cid in shown for cid in c_best)


@pytest.mark.anyio
async def test_pools_are_no_deeper_than_a_peer_answers(tmp_path: Path) -> None:
    options = NodeOptions(
        data_dir=tmp_path / "a",
        collections=Collections.of(["a"]),
        retrieval=RetrievalOptions(candidate_pool=5000),
    )
    network = ScriptedNetwork()
    node = memory_node(tmp_path / "a", OPERATOR, options=options, network=network)
    await node.start()
    try:
        other = Net(tmp_path / "peers", "memory")
        await other.start(corpus(n=12))
        network.entries = other.net.entries
        network.answers = other.net.answers
        await node.query(query("blood heart", SearchMode.HYBRID))
        depths = [r.query.k for _, r in network.asked if isinstance(r, PoolsQuery)]
        assert depths and max(depths) == MAX_POOL_DEPTH
        await other.close()
    finally:
        await node.close()


@pytest.mark.anyio
async def test_a_node_states_only_the_asked_collections(tmp_path: Path) -> None:
    """Asked for b of the b and c it holds: entries and statistics of b alone."""
    options = NodeOptions(data_dir=tmp_path / "bc", collections=Collections.of(["b", "c"]))
    node = memory_node(tmp_path / "bc", OPERATOR, options=options, keywords=Bm25Index())
    await node.start()
    try:
        facts = corpus(n=30)
        for text, collection in facts:
            if collection != "a":
                await add(node, text, collection)
        vector = tuple(float(x) for x in HashEmbedder().embed(["blood heart"])[0])
        request = PoolsQuery(
            RemoteQuery("blood heart", vector, node.model_cid, 100, SearchMode.HYBRID, ("b",)),
            (("blood", 1), ("heart", 1)),
        )
        answer = await node._federator.serve(request, "x")
        assert isinstance(answer, PoolsAnswer) and answer.searched == ("b",)
        b_texts = [t for t, c in facts if c == "b"]
        assert answer.stats.docs == len(b_texts)
        assert answer.stats.df[0] == sum("blood" in t.split() or "blood." in t for t in b_texts)
        fetched = await node._federator.serve(
            FetchQuery(tuple(e.cid for e in answer.entries), ("b",)), "x"
        )
        assert isinstance(fetched, FetchAnswer)
        assert len(fetched.proofs) == len(answer.entries) > 0
    finally:
        await node.close()


@pytest.mark.anyio
async def test_a_node_serves_fetches_only_of_its_collections(net: Net) -> None:
    b = net.nodes["b"]
    cid_a = await add(net.nodes["a"], "Only in a: blood.", "a")
    cid_b = await add(b, "Only in b: blood.", "b")
    with pytest.raises(CollectionNotHeld):
        await b._federator.serve(FetchQuery((cid_b,), ("a",)), "x")
    answer = await b._federator.serve(FetchQuery((cid_a, cid_b), ("b", "a")), "x")
    assert isinstance(answer, FetchAnswer)
    assert [cid for cid, _ in answer.proofs] == [cid_b]
