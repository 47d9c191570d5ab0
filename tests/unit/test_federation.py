"""Federated query (node.federation, node.federator): the plan from the directory, every check
of a remote hit (forged block, forged signature, another collection, a filter it breaks, an
inflated relevance), penalties, time budgets, another model never asked, completeness, and
answering peers (model, held collections).

Two real memory nodes: the one asked answers through its real ``answer_query`` path; a
scripted network in between lets a test tamper with that honest answer the way a hostile
peer would."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, cast

import dag_cbor
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from node.collections import Collections
from node.errors import CollectionNotHeld, InvalidQuery, ModelMismatch
from node.facts import make_fact
from node.federation import RELEVANCE_TOLERANCE, merge, plan_query
from node.filters import parse_filter
from node.memory import HashEmbedder
from node.pooled import MAX_SETTLE_ROUNDS
from node.ports import (
    CollectionAdvert,
    DirectoryEntry,
    Network,
    PeerAnswer,
    RemoteAnswer,
    RemoteHit,
    RemoteQuery,
    StoredFact,
    Vectors,
)
from node.results import PeerOutcome, ScoredFact
from node.search import Query, RankBy, Scope, SearchMode
from node.service import KnowledgeNode, NodeOptions
from node.signing import SigningKey
from tests.memory_nodes import memory_node
from tests.scripted_network import Handler, ScriptedNetwork

OPERATOR = SigningKey.generate()
ALICE = SigningKey.generate()
MALLORY = SigningKey.generate()
PEER = "peer-b"
#: The bundled model's fp32 CID: another model than the hash fake these nodes run.
OTHER_MODEL = "bafyreies5s4bfxkrrqba6j277kqcy6lto7oc6ng6jkep4qae5fl7nc237i"

Answer = Handler


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def entry(peer: str, model: str, **collections: int) -> DirectoryEntry:
    adverts = {name: CollectionAdvert(n, "00" * 8) for name, n in collections.items()}
    return DirectoryEntry(peer, model, False, adverts, 1.0, True)


def node_holding(path: Path, *names: str, network: Network | None = None) -> KnowledgeNode:
    options = NodeOptions(data_dir=path, collections=Collections.of(names))
    return memory_node(path, OPERATOR, options=options, network=network)


async def add(node: KnowledgeNode, text: str, collection: str, **metadata: Any) -> str:
    fact = make_fact(text, metadata or None, ALICE.address, collection=collection)
    signed = {
        "text": text,
        "metadata": metadata or None,
        "contributor": ALICE.address,
        "signature": ALICE.sign_cid(fact.cid),
        "collection": collection,
    }
    done = await node.contribute(node.accept(signed))
    return done.cid


Pair = tuple[KnowledgeNode, KnowledgeNode, ScriptedNetwork]


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    """Node A holds ``a``; node B holds ``b`` and answers A's asks with its real path."""
    net = ScriptedNetwork()
    a = node_holding(tmp_path / "a", "a", network=net)
    b = node_holding(tmp_path / "b", "b")
    await a.start()
    await b.start()
    await add(a, "The heart pumps blood through the body.", "a")
    await add(b, "Blood carries oxygen from the lungs.", "b", topic="blood")
    await add(b, "Volcanoes erupt molten rock.", "b", topic="geology")
    net.entries = [entry(PEER, a.model_cid, b=2)]
    net.answers[PEER] = lambda q: b._federator.serve(q, "peer-a")
    try:
        yield a, b, net
    finally:
        await a.close()
        await b.close()


def network_query(text: str, **extra: Any) -> Query:
    return Query(text=text, k=5, mode=SearchMode.DENSE, scope=Scope.NETWORK, **extra)


@pytest.mark.anyio
async def test_a_network_query_merges_verified_hits_of_a_peer(pair: Pair) -> None:
    a, _, net = pair
    result = await a.query(network_query("blood oxygen lungs"))
    sources = {r.fact.text: r.source for r in result.results}
    assert sources["Blood carries oxygen from the lungs."] == PEER
    assert sources["The heart pumps blood through the body."] is None
    remote = next(r for r in result.results if r.source == PEER)
    assert remote.verdict == "pending"  # no chain here: record and signature checked
    assert remote.fact.collection == "b"
    relevances = [r.relevance or 0.0 for r in result.results]
    assert relevances == sorted(relevances, reverse=True)
    c = result.completeness
    assert c is not None and c.complete
    assert (c.local, c.remote, c.missing) == (("a",), ("b",), ())
    assert c.peers[0].outcome is PeerOutcome.ANSWERED and c.peers[0].hits == 2
    assert net.asked[0][1].collections == ("b",)
    assert not net.penalties
    # proofs travel on only when asked for
    assert remote.remote_proof is None
    proved = await a.query(network_query("blood oxygen lungs", proofs=True))
    assert all(r.remote_proof is not None for r in proved.results if r.source == PEER)


@pytest.mark.anyio
async def test_a_local_query_never_asks_peers(pair: Pair) -> None:
    a, _, net = pair
    result = await a.query(Query(text="blood", k=5, mode=SearchMode.DENSE))
    assert result.completeness is None and not net.asked
    assert all(r.source is None for r in result.results)


def tampered(answer: Answer, change: Callable[[RemoteHit], RemoteHit]) -> Answer:
    async def answering(query: RemoteQuery) -> RemoteAnswer:
        honest = await answer(query)
        return RemoteAnswer(tuple(change(h) for h in honest.hits), honest.searched)

    return answering


def with_block(hit: RemoteHit, record: dict[str, Any]) -> RemoteHit:
    block = dag_cbor.encode(record)
    return replace(hit, proof={**hit.proof, "block": base64.b64encode(block).decode()})


def decoded(hit: RemoteHit) -> dict[str, Any]:
    return cast(dict[str, Any], dag_cbor.decode(base64.b64decode(hit.proof["block"])))


def forge_text(hit: RemoteHit) -> RemoteHit:
    return with_block(hit, {**decoded(hit), "text": "Blood is green."})


def forge_signature(hit: RemoteHit) -> RemoteHit:
    return replace(hit, proof={**hit.proof, "signature": MALLORY.sign_cid(hit.cid)})


def inflate(hit: RemoteHit) -> RemoteHit:
    return replace(hit, relevance=min(1.0, (hit.relevance or 0) + 4 * RELEVANCE_TOLERANCE))


def odd_status(hit: RemoteHit) -> RemoteHit:
    return replace(hit, proof={**hit.proof, "status": "weird", "extra": b"\x00"})


def bad_root(hit: RemoteHit) -> RemoteHit:
    return replace(hit, proof={**hit.proof, "status": "anchored", "root": "0x" + "zz" * 32})


@pytest.mark.anyio
@pytest.mark.parametrize(
    "change",
    [forge_text, forge_signature, inflate, odd_status, bad_root],
    ids=["text", "signature", "relevance", "status", "root"],
)
async def test_a_forged_hit_is_caught_and_its_peer_penalised(
    pair: Pair, change: Callable[[RemoteHit], RemoteHit]
) -> None:
    a, _, net = pair
    net.answers[PEER] = tampered(net.answers[PEER], change)
    result = await a.query(network_query("blood oxygen lungs"))
    assert all(r.source is None for r in result.results)
    c = result.completeness
    assert c is not None and not c.complete and c.missing == ("b",)
    report = c.peers[0]
    assert report.outcome is PeerOutcome.INVALID and report.rejected >= 1 and report.hits == 0
    assert net.penalties and net.penalties[0][0] == PEER
    # penalised: left out of the next network query, which says so
    again = await a.query(network_query("blood"))
    assert len(net.asked) == 1
    assert again.completeness is not None and again.completeness.missing == ("b",)
    assert "penalised" in again.completeness.reasons["b"]


@pytest.mark.anyio
async def test_a_hit_of_a_collection_not_asked_is_caught(pair: Pair, tmp_path: Path) -> None:
    a, _, net = pair
    other = node_holding(tmp_path / "c", "c")
    await other.start()
    try:
        await add(other, "Blood is made in the bone marrow.", "c")
        net.answers[PEER] = lambda q: other._federator.serve(replace(q, collections=("c",)), "x")
        result = await a.query(network_query("blood"))
    finally:
        await other.close()
    assert result.completeness is not None
    assert result.completeness.peers[0].outcome is PeerOutcome.INVALID
    assert "not asked" in (result.completeness.peers[0].reason or "")
    assert all(r.source is None for r in result.results)


@pytest.mark.anyio
async def test_a_hit_breaking_the_filter_is_caught(pair: Pair) -> None:
    a, _, net = pair

    net_answer = net.answers[PEER]

    async def ignoring_filter(query: RemoteQuery) -> PeerAnswer:
        answer: PeerAnswer = await net_answer(replace(query, filter=None))
        return answer

    net.answers[PEER] = ignoring_filter
    result = await a.query(network_query("blood", filter=parse_filter({"topic": "geology"})))
    assert result.completeness is not None
    assert result.completeness.peers[0].outcome is PeerOutcome.INVALID
    assert net.penalties
    # an honest peer applies the filter: its hits pass
    net.answers[PEER] = net_answer
    a._federator._penalised.clear()
    honest = await a.query(network_query("blood", filter=parse_filter({"topic": "geology"})))
    assert [r.fact.text for r in honest.results if r.source] == ["Volcanoes erupt molten rock."]


@pytest.mark.anyio
async def test_a_peer_over_the_budget_is_reported_as_timed_out(pair: Pair) -> None:
    a, _, net = pair
    honest = net.answers[PEER]

    async def slow(query: RemoteQuery) -> PeerAnswer:
        await asyncio.sleep(3600)
        answer: PeerAnswer = await honest(query)
        return answer

    net.answers[PEER] = slow
    result = await a.query(network_query("blood", budget=0.05))
    c = result.completeness
    assert c is not None and c.missing == ("b",) and "timeout" in c.reasons["b"]
    assert c.peers[0].outcome is PeerOutcome.TIMEOUT
    assert [r.fact.collection for r in result.results] == ["a"]
    assert not net.penalties  # slow is not hostile


@pytest.mark.anyio
async def test_a_peer_with_another_model_is_never_asked(pair: Pair) -> None:
    a, _, net = pair
    net.entries = [entry(PEER, OTHER_MODEL, b=2)]
    result = await a.query(network_query("blood"))
    assert not net.asked
    c = result.completeness
    assert c is not None and c.missing == ("b",) and "another embedding model" in c.reasons["b"]


@pytest.mark.anyio
async def test_a_named_collection_nobody_advertises_is_missing(pair: Pair) -> None:
    a, _, net = pair
    result = await a.query(network_query("blood", collections=("a", "z")))
    c = result.completeness
    assert c is not None and c.local == ("a",) and c.missing == ("z",) and not net.asked


@pytest.mark.anyio
async def test_without_networking_remote_collections_are_missing(tmp_path: Path) -> None:
    node = node_holding(tmp_path, "a")
    await node.start()
    try:
        result = await node.query(network_query("blood", collections=("a", "b")))
    finally:
        await node.close()
    c = result.completeness
    assert c is not None and c.missing == ("b",) and "networking is off" in c.reasons["b"]


@pytest.mark.anyio
async def test_a_budget_out_of_bounds_is_invalid(pair: Pair) -> None:
    a, _, _ = pair
    for budget in (0.0, -1.0, 61.0, float("nan")):
        with pytest.raises(InvalidQuery):
            await a.query(network_query("blood", budget=budget))
    with pytest.raises(InvalidQuery):
        await a.query(network_query("blood", min_score=0.1))


@pytest.mark.anyio
async def test_reputation_ranking_weighs_remote_hits_too(pair: Pair) -> None:
    a, _, _ = pair
    result = await a.query(network_query("blood oxygen", rank=RankBy.REPUTATION))
    assert all(r.standing is not None for r in result.results)


# -- answering peers ---------------------------------------------------------------------------


def remote(node: KnowledgeNode, *collections: str, model: str | None = None) -> RemoteQuery:
    return RemoteQuery(
        text="blood",
        vector=tuple([1.0] + [0.0] * 383),
        model_cid=model or node.model_cid,
        k=5,
        mode=SearchMode.HYBRID,
        collections=collections,
    )


@pytest.mark.anyio
async def test_a_node_answers_peers_only_in_its_model_and_its_collections(pair: Pair) -> None:
    _, b, _ = pair
    with pytest.raises(ModelMismatch):
        await b._federator.serve(remote(b, "b", model=OTHER_MODEL), "x")
    with pytest.raises(InvalidQuery):
        await b._federator.serve(remote(b, "b", model="not a cid"), "x")
    with pytest.raises(CollectionNotHeld):
        await b._federator.serve(remote(b, "a", "z"), "x")
    answer = await b._federator.serve(remote(b, "b", "z"), "x")
    assert isinstance(answer, RemoteAnswer) and len(answer.hits) == 2
    assert all(h.proof["signature"] and h.proof["block"] for h in answer.hits)
    assert all(h.relevance is not None for h in answer.hits)


# -- the plan ------------------------------------------------------------------------------------


def test_the_plan_covers_collections_with_the_fewest_peers() -> None:
    held = Collections.of(["a"])
    directory = [
        entry("p1", "m", b=5),
        entry("p2", "m", b=5, c=5),
        entry("p3", "m", d=1),
        entry("p4", "other", e=9),
        replace(entry("p5", "m", f=3), connected=False),
        entry("p6", "m", g=0),
    ]
    plan = plan_query(["a", "b", "c", "d", "e", "f", "g"], held.holds, directory, "m")
    assert plan.local == ("a",)
    assert plan.asks == {"p2": ("b", "c"), "p3": ("d",)}
    assert set(plan.missing) == {"e", "f", "g"}
    assert "another embedding model" in plan.missing["e"]
    penalised = plan_query(["b"], held.holds, directory, "m", frozenset({"p2"}))
    assert penalised.asks == {"p1": ("b",)}
    capped = plan_query(["b", "d"], held.holds, directory, "m", max_peers=1)
    assert len(capped.asks) == 1 and len(capped.missing) == 1


# -- REST ----------------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: node_holding(tmp_path, "a"))) as test_client:
        yield test_client


def test_rest_network_scope_reports_completeness(client: TestClient) -> None:
    added = client.post("/v1/facts", json={"text": "Blood is red.", "collection": "a"})
    assert added.status_code == 201, added.text
    body = {"query": "blood", "scope": "network", "collections": ["a", "b"], "budget_ms": 500}
    reply = client.post("/v1/query", json=body)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["completeness"]["complete"] is False
    assert answer["completeness"]["local"] == ["a"] and answer["completeness"]["missing"] == ["b"]
    assert "networking is off" in answer["completeness"]["reasons"]["b"]
    assert [hit["text"] for hit in answer["results"]] == ["Blood is red."]
    assert "source" not in answer["results"][0]
    lean = client.post("/v1/query", json={**body, "include": ["cid", "source"]}).json()
    assert lean["completeness"]["missing"] == ["b"] and set(lean["results"][0]) == {"cid", "source"}
    local = client.post("/v1/query", json={"query": "blood"}).json()
    assert "completeness" not in local


HOSTILE_SCOPES: list[object] = ["Network", "global", "", 1, None, ["network"], "\ud800"]
HOSTILE_BUDGETS: list[object] = [0, 9, 60_001, -5, "100", 1.5, True, [100]]


@pytest.mark.parametrize("scope", HOSTILE_SCOPES, ids=range(len(HOSTILE_SCOPES)))
def test_hostile_scopes_get_a_400(client: TestClient, scope: object) -> None:
    body = json.dumps({"query": "blood", "scope": scope}).encode("utf-8", "surrogatepass")
    reply = client.post("/v1/query", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text


@pytest.mark.parametrize("budget", HOSTILE_BUDGETS, ids=range(len(HOSTILE_BUDGETS)))
def test_hostile_budgets_get_a_400(client: TestClient, budget: object) -> None:
    reply = client.post(
        "/v1/query", json={"query": "blood", "scope": "network", "budget_ms": budget}
    )
    assert reply.status_code == 400, reply.text


@pytest.mark.anyio
async def test_only_the_remote_hits_shown_are_embedded_again(tmp_path: Path) -> None:
    class Counting(HashEmbedder):
        texts: ClassVar[list[str]] = []

        def embed(self, texts: Sequence[str]) -> Vectors:
            Counting.texts.extend(texts)
            return super().embed(texts)

    net = ScriptedNetwork()
    options = NodeOptions(data_dir=tmp_path / "a", collections=Collections.of(["a"]))
    a = memory_node(tmp_path / "a", OPERATOR, options=options, network=net, embedder=Counting())
    b = node_holding(tmp_path / "b", "b")
    await a.start()
    await b.start()
    try:
        for n in range(6):
            await add(b, f"Blood fact number {n} about oxygen.", "b")
        net.entries = [entry(PEER, a.model_cid, b=6)]
        net.answers[PEER] = lambda q: b._federator.serve(q, "peer-a")
        Counting.texts.clear()
        result = await a.query(replace(network_query("blood oxygen"), k=2))
        assert [r.source for r in result.results] == [PEER, PEER]
        remote_texts = [t for t in Counting.texts if t.startswith("Blood fact")]
        assert len(remote_texts) == 2, Counting.texts  # of 6 the peer sent, the 2 shown
    finally:
        await a.close()
        await b.close()


def scored(cid: str, text: str, relevance: float, source: str | None = None) -> ScoredFact:
    fact = StoredFact(-1, cid, text, {}, None, 0.0)
    return ScoredFact(fact, 0.0, relevance=relevance, source=source)


def test_the_merge_orders_the_union_by_relevance() -> None:
    """The one-round merge (dense, or a query without keyword terms): one hit per CID and per
    text, a local copy first; the score a local search of the mode gives."""
    local = [scored("l1", "local one", 0.9)]
    remote = [
        scored("r1", "remote one", 0.5, PEER),
        scored("r2", "remote two", 0.8, PEER),
        scored("l1", "the same CID as a local hit", 0.99, PEER),
        scored("r3", "local one", 0.99, PEER),  # the same text as a local hit
    ]
    dense = merge(local, remote, SearchMode.DENSE)
    assert [r.fact.cid for r in dense] == ["l1", "r2", "r1"]
    assert [r.score for r in dense] == [0.9, 0.8, 0.5]
    fused = merge(local, remote, SearchMode.HYBRID)  # no keyword ranking: RRF of one order
    assert [r.fact.cid for r in fused] == ["l1", "r2", "r1"]
    assert [r.score for r in fused] == pytest.approx([1 / 61, 1 / 62, 1 / 63])


def test_a_write_of_a_collection_not_held_names_its_holders(tmp_path: Path) -> None:
    net = ScriptedNetwork()
    node = lambda: node_holding(tmp_path, "a", network=net)  # noqa: E731
    with TestClient(create_app(node)) as client:
        net.entries = [
            entry("peer-far", "m", b=3),
            replace(entry("peer-gone", "m", b=1), connected=False),
            entry("peer-other", "m", c=2),
        ]
        reply = client.post("/v1/facts", json={"text": "A b fact.", "collection": "b"})
        assert reply.status_code == 409, reply.text
        error = reply.json()["error"]
        assert error["code"] == "collection_not_held"
        assert error["holders"] == ["peer-far", "peer-gone"]  # connected first
        assert "peer-far" in error["message"]
        assert client.get("/v1/status").json()["facts"] == 0
        net.entries = []
        nobody = client.post("/v1/facts", json={"text": "A b fact.", "collection": "b"})
        assert nobody.status_code == 409 and "holders" not in nobody.json()["error"]


@pytest.mark.anyio
async def test_a_stale_advert_leaves_the_collection_missing(pair: Pair) -> None:
    a, _, net = pair
    net.entries = [entry(PEER, a.model_cid, b=2, c=5)]  # b really holds only "b"
    result = await a.query(network_query("blood", collections=("a", "b", "c")))
    covered = result.completeness
    assert covered is not None and covered.remote == ("b",) and covered.missing == ("c",)
    assert "stale advert" in covered.reasons["c"] and not net.penalties


@pytest.mark.anyio
async def test_a_peer_claiming_to_search_what_was_not_asked_is_caught(pair: Pair) -> None:
    a, _, net = pair
    honest = net.answers[PEER]

    async def boasting(query: RemoteQuery) -> RemoteAnswer:
        answer = await honest(query)
        return RemoteAnswer(answer.hits, (*answer.searched, "z"))

    net.answers[PEER] = boasting
    result = await a.query(network_query("blood"))
    assert result.completeness is not None
    assert result.completeness.peers[0].outcome is PeerOutcome.INVALID and net.penalties


def test_the_plan_never_asks_one_peer_for_more_than_a_request_holds() -> None:
    names = [f"c{i:02d}" for i in range(40)]
    directory = [entry("p1", "m", **dict.fromkeys(names, 1))]
    plan = plan_query(names, Collections.of(["a"]).holds, directory, "m")
    assert len(plan.asks["p1"]) == 32 and len(plan.missing) == 8
    assert all("not asked" in why for why in plan.missing.values())


@pytest.mark.anyio
async def test_relevance_is_recomputed_for_at_most_a_few_rounds(tmp_path: Path) -> None:
    """A peer states every relevance a little too high, within the tolerance: each round the
    shown remote hit is recomputed, falls below the local one and lets the next in. After
    MAX_SETTLE_ROUNDS rounds the rest are left out instead of embedding every candidate."""

    class Counting(HashEmbedder):
        texts: ClassVar[list[str]] = []

        def embed(self, texts: Sequence[str]) -> Vectors:
            Counting.texts.extend(texts)
            return super().embed(texts)

    def filler(n: int, i: int) -> str:  # "alpha beta" and n distinct words: cos ~ 2/sqrt(2(n+2))
        return "alpha beta " + " ".join(f"w{n}y{i}z{j}" for j in range(n))

    embedder = HashEmbedder()
    query = embedder.embed(["alpha beta"])[0]
    local_text = filler(18, 0)
    local_cos = float(embedder.embed([local_text])[0] @ query)
    remote_texts = [
        t
        for t in (filler(19, i) for i in range(300))
        if 0.003 < local_cos - float(embedder.embed([t])[0] @ query) < 0.012
    ][:10]
    assert len(remote_texts) == 10
    net = ScriptedNetwork()
    options = NodeOptions(data_dir=tmp_path, collections=Collections.of(["a"]))
    a = memory_node(tmp_path, OPERATOR, options=options, network=net, embedder=Counting())
    await a.start()
    try:
        await add(a, local_text, "a")
        net.entries = [entry(PEER, a.model_cid, b=10)]

        async def flattering(q: RemoteQuery) -> RemoteAnswer:
            hits = []
            for text in remote_texts:
                fact = make_fact(text, None, ALICE.address, collection="b")
                true = float(embedder.embed([text])[0] @ query)
                proof: dict[str, Any] = {
                    "block": base64.b64encode(fact.block).decode(),
                    "signature": ALICE.sign_cid(fact.cid),
                    "status": "pending",
                    "root": None,
                    "merkle_proof": [],
                    "anchor": None,
                    "tombstone": None,
                }
                hits.append(RemoteHit(fact.cid, 0.0, true + 0.015, proof))
            return RemoteAnswer(tuple(hits), ("b",))

        net.answers[PEER] = flattering
        Counting.texts.clear()
        result = await a.query(replace(network_query("alpha beta"), k=1))
        assert [r.fact.text for r in result.results] == [local_text]
        remote_embedded = [t for t in Counting.texts if t in remote_texts]
        assert len(remote_embedded) == MAX_SETTLE_ROUNDS, len(remote_embedded)
        assert not net.penalties  # within the tolerance: not a lie
    finally:
        await a.close()
