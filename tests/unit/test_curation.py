"""Curation in-process (fast tier): attestations over REST, the reputation they give, the
``rank: reputation`` ordering, ``min_reputation``, the context's dispute marks and the
contributor view, on the real app with in-memory fakes. The same across real node processes
and gossip is in tests/integration/test_curation_network.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from index.sqlite_catalog import SqliteCatalog
from node.attestation import make_attestation
from node.curation import Curation
from node.facts import make_fact
from node.memory import HashEmbedder, MemoryKeywordIndex, MemoryVectorIndex
from node.ports import NewFact
from node.records import SignedRecord
from node.reputation import fact_weight
from node.retrieval import Retriever
from node.search import Query, RankBy, SearchMode
from node.service import NodeOptions
from node.signing import SigningKey
from node.tombstone import make_tombstone
from tests.memory_nodes import memory_node
from tests.signed_bodies import signed_attestation, signed_fact

OPERATOR = SigningKey.generate()
ROOT = SigningKey.generate()
ALICE = SigningKey.generate()
MALLORY = SigningKey.generate()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    options = NodeOptions(
        data_dir=tmp_path, trust_roots=frozenset({ROOT.address}), reputation_interval=0.01
    )
    app = create_app(lambda: memory_node(tmp_path, OPERATOR, options=options))
    with TestClient(app) as test_client:
        yield test_client


def contribute(client: TestClient, key: SigningKey, text: str) -> str:
    reply = client.post("/v1/facts", json=signed_fact(key, text))
    assert reply.status_code == 201, reply.text
    return str(reply.json()["cid"])


def attest(
    client: TestClient, key: SigningKey, cid: str, verdict: str, at: int = 1_000
) -> dict[str, Any]:
    body, made = signed_attestation(key, cid, verdict, at)
    reply = client.post(f"/v1/facts/{cid}/attestations", json=body)
    assert reply.status_code in (200, 201), reply.text
    out: dict[str, Any] = reply.json()
    assert out["attestation"] == made
    return out


def wait_for(check: Callable[[], bool], what: str, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def reputation(client: TestClient, key: SigningKey) -> float:
    return float(client.get(f"/v1/contributors/{key.address}").json()["reputation"])


def query(client: TestClient, text: str, **extra: Any) -> dict[str, Any]:
    reply = client.post("/v1/query", json={"query": text, "k": 2, "mode": "keyword", **extra})
    assert reply.status_code == 200, reply.text
    out: dict[str, Any] = reply.json()
    return out


def test_an_endorsement_by_a_trust_root_lifts_its_contributor_above_strangers(
    client: TestClient,
) -> None:
    planted = contribute(client, MALLORY, "Vitamin C cures influenza cures influenza influenza.")
    honest = contribute(client, ALICE, "Vitamin C does not cure influenza.")
    before = query(client, "vitamin C influenza")
    assert [h["cid"] for h in before["results"]] == [planted, honest]  # by relevance alone
    assert before["results"][0]["curation"]["reputation"] == 0.0

    attest(client, ROOT, honest, "endorse")
    wait_for(lambda: reputation(client, ALICE) == 1.0, "Alice's reputation")
    ranked = query(client, "vitamin C influenza")
    assert [h["cid"] for h in ranked["results"]] == [honest, planted]
    top = ranked["results"][0]["curation"]
    assert top["endorsements"] == 1 and top["disputes"] == 0 and top["reputation"] == 1.0
    assert ranked["results"][1]["curation"]["weight"] == pytest.approx(0.05)
    plain = query(client, "vitamin C influenza", rank="relevance")
    assert [h["cid"] for h in plain["results"]] == [planted, honest]
    # ranked by relevance alone, the hits still carry their standing
    assert plain["results"][1]["curation"] == top
    assert plain["results"][0]["curation"]["weight"] == pytest.approx(0.05)
    trusted = query(client, "vitamin C influenza", min_reputation=0.5)
    assert [h["cid"] for h in trusted["results"]] == [honest]

    view = client.get(f"/v1/contributors/{ALICE.address.lower()}").json()
    assert view["address"] == ALICE.address and view["facts"] == 1
    assert view["endorsements"] == 1 and view["trust"] > 0 and not view["trust_root"]
    root = client.get(f"/v1/contributors/{ROOT.address}").json()
    assert root["trust_root"] and root["endorsements_given"] == 1


def test_a_later_attestation_replaces_the_earlier_and_the_context_marks_disputes(
    client: TestClient,
) -> None:
    cid = contribute(client, ALICE, "The Moon is made of basalt and anorthosite.")
    other = contribute(client, ALICE, "The Moon orbits the Earth.")
    attest(client, ROOT, other, "endorse")
    attest(client, ROOT, cid, "endorse", at=10)
    attest(client, ROOT, cid, "dispute", at=20)
    attest(client, ROOT, cid, "endorse", at=15)  # older than the dispute: not current
    wait_for(
        lambda: query(client, "Moon basalt")["results"][0]["curation"]["disputes"] == 1,
        "the dispute to count",
    )
    answer = query(client, "Moon basalt anorthosite", min_relevance=-1.0)
    hit = next(h for h in answer["results"] if h["cid"] == cid)
    assert hit["curation"]["endorsements"] == 0 and hit["curation"]["trusted_disputes"] == 1
    assert f"(cid: {cid}) [DISPUTED by 1 trusted contributor]" in answer["context"]
    plain = query(client, "Moon basalt anorthosite", min_relevance=-1.0, rank="relevance")
    assert f"(cid: {cid}) [DISPUTED by 1 trusted contributor]" in plain["context"]


def test_a_clique_of_fresh_keys_endorsing_each_other_gains_no_weight(client: TestClient) -> None:
    keys = [SigningKey.generate() for _ in range(50)]
    cids = [
        contribute(client, key, f"Planted claim number {n}." if n < 20 else f"Other words {n}.")
        for n, key in enumerate(keys)
    ]
    for n, key in enumerate(keys):
        for m in (n + 1, n + 2, n + 3):
            attest(client, key, cids[m % len(cids)], "endorse")
    honest = contribute(client, ALICE, "A planted claim is not evidence.")
    attest(client, ROOT, honest, "endorse")
    wait_for(lambda: reputation(client, ALICE) == 1.0, "Alice's reputation")
    assert all(reputation(client, key) == 0.0 for key in keys[:10])
    view = client.get(f"/v1/contributors/{keys[0].address}").json()
    assert view["endorsements"] == 3 and view["trust"] == 0.0
    answer = query(client, "planted claim", k=10)
    ranked = [h["cid"] for h in answer["results"]]
    assert ranked.index(honest) <= 1  # from 21st by relevance (a weight w moves p to ~p / w)
    weights = {h["cid"]: h["curation"]["weight"] for h in answer["results"]}
    assert weights[honest] == 1.0
    assert sorted(set(weights.values())) == [pytest.approx(0.05), 1.0]
    trusted = query(client, "planted claim", k=10, min_reputation=0.01)
    assert [h["cid"] for h in trusted["results"]] == [honest]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"verdict": "like"}, 400),
        ({"verdict": "endorse", "extra": 1}, 400),
        (
            {
                "verdict": "endorse",
                "at": -1,
                "contributor": ALICE.address,
                "signature": "0x" + "1" * 130,
            },
            400,
        ),
        ({"verdict": "endorse"}, 401),  # no signature, no API key
        (
            {
                "verdict": "endorse",
                "at": 5,
                "contributor": ALICE.address,
                "signature": "0x" + "11" * 65,
            },
            400,
        ),
    ],
)
def test_invalid_attestations_get_a_clear_4xx_and_change_nothing(
    client: TestClient, body: dict[str, Any], code: int
) -> None:
    cid = contribute(client, ALICE, "Water boils at 100 degrees Celsius at sea level.")
    reply = client.post(f"/v1/facts/{cid}/attestations", json=body)
    assert reply.status_code == code, reply.text
    assert reply.json()["error"]["code"]
    assert client.get(f"/v1/contributors/{ALICE.address}").json()["endorsements"] == 0


@pytest.mark.parametrize(
    "content",
    [
        b'{"verdict": "endorse", "contributor": "\\ud800", "at": 1, "signature": "0x00"}',
        b'{"verdict": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'{"verdict": "endorse", "at": 1e400}',
        b'{"verdict": "endorse", "at": true}',
    ],
)
def test_hostile_attestation_bodies_get_a_clear_4xx(client: TestClient, content: bytes) -> None:
    cid = contribute(client, ALICE, "Glass is an amorphous solid.")
    reply = client.post(
        f"/v1/facts/{cid}/attestations",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 400, reply.text
    assert client.get(f"/v1/contributors/{ALICE.address}").json()["endorsements"] == 0


@pytest.mark.parametrize(
    "extra",
    [{"rank": "popularity"}, {"rank": 1}, {"min_reputation": 2}, {"min_reputation": "high"}],
)
def test_bad_ranking_options_get_400(client: TestClient, extra: dict[str, Any]) -> None:
    reply = client.post("/v1/query", json={"query": "glass", **extra})
    assert reply.status_code == 400, reply.text


def test_forged_and_misdirected_attestations_are_refused(client: TestClient) -> None:
    cid = contribute(client, ALICE, "Salt water conducts electricity.")
    made = make_attestation(cid, "endorse", ROOT.address, 7)
    forged = {
        "verdict": "endorse",
        "contributor": ROOT.address,
        "at": 7,
        "signature": MALLORY.sign_cid(made.cid),
    }
    assert client.post(f"/v1/facts/{cid}/attestations", json=forged).status_code == 401
    unknown = make_fact("never stored", {}, None).cid
    body = {
        **forged,
        "signature": ROOT.sign_cid(make_attestation(unknown, "endorse", ROOT.address, 7).cid),
    }
    assert client.post(f"/v1/facts/{unknown}/attestations", json=body).status_code == 404
    assert client.post("/v1/facts/not-a-cid/attestations", json=forged).status_code == 400
    for bad in ("0x123", "alice", "0x" + "g" * 40, "0x" + "1" * 41, "%ED%A0%80"):
        assert client.get(f"/v1/contributors/{bad}").status_code in (400, 404), bad
    assert client.get(f"/v1/contributors/{ROOT.address}").json()["endorsements_given"] == 0


def test_the_record_to_sign_matches_what_the_client_builds(client: TestClient) -> None:
    cid = contribute(client, ALICE, "Copper is a good conductor.")
    got = client.get(
        f"/v1/facts/{cid}/attestation",
        params={"verdict": "dispute", "contributor": ROOT.address, "at": 42},
    ).json()
    made = make_attestation(cid, "dispute", ROOT.address, 42)
    assert got["cid"] == made.cid and got["record"] == made.record()


def test_an_attestation_about_a_record_that_is_not_a_fact_is_invalid(client: TestClient) -> None:
    cid = contribute(client, ALICE, "Iron rusts in moist air.")
    tombstone = make_tombstone(cid, ALICE.address)
    reply = client.request(
        "DELETE",
        f"/v1/facts/{cid}",
        json={"contributor": ALICE.address, "signature": ALICE.sign_cid(tombstone.cid)},
    )
    assert reply.status_code == 201, reply.text
    node = client.app.state.node  # type: ignore[attr-defined]
    made = make_attestation(tombstone.cid, "endorse", ROOT.address, 1)
    assert made.cid in node.curation.judge([made])


def test_a_pool_eaten_by_repeated_texts_still_gives_k_results(tmp_path: Path) -> None:
    # A catalog from before near-duplicate links can hold one text many times, all indexed:
    # de-duplication then eats the reputation pool, and the ranking goes on past it.
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    embedder = HashEmbedder()
    texts = ["repeated claim"] * 45 + ["repeated claim, said once more"]
    facts = [make_fact(t, {"n": n}, None) for n, t in enumerate(texts)]
    vectors = embedder.embed(texts)
    rows = catalog.insert([NewFact(f, v) for f, v in zip(facts, vectors, strict=True)])
    ids = np.array([row for row, _ in rows], dtype=np.int64)
    keywords, index = MemoryKeywordIndex(), MemoryVectorIndex(embedder.dimension)
    keywords.add(ids, texts)  # indexed as an older node left them
    index.add(ids, vectors)
    curation = Curation(catalog, {ROOT.address})
    retriever = Retriever(catalog, index, keywords, embedder, standing=curation.standing)
    for rank in RankBy:
        query = Query("repeated claim", k=2, mode=SearchMode.KEYWORD, rank=rank)
        results = retriever.rank(query, embedder.embed([query.text])[0])
        assert [r.fact.text for r in results] == [texts[0], texts[-1]], rank
        # the second comes from beyond the weighed pool, and carries its standing too
        assert all(r.standing is not None for r in results), rank
    catalog.close()


def test_a_search_goes_deeper_only_while_a_deeper_hit_could_be_a_result(tmp_path: Path) -> None:
    """A floor keeps to the first k + REPUTATION_POOL hits, and min_score cuts lower scores:
    once either has decided, searching the index deeper (up to all of it) cannot add a result.
    A floor nobody reaches used to deepen until the pool held the whole index."""
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    embedder = HashEmbedder()
    texts = [f"claim number {n} about cells and tissue {n % 7}" for n in range(600)]
    vectors = embedder.embed(texts)
    facts = [make_fact(t, {}, ALICE.address) for t in texts]
    rows = catalog.insert([NewFact(f, v) for f, v in zip(facts, vectors, strict=True)])
    ids = np.array([row for row, _ in rows], dtype=np.int64)
    pools: list[int] = []

    class Spy(MemoryVectorIndex):
        def search(self, vector: Any, k: int, *args: Any, **kwargs: Any) -> Any:
            pools.append(k)
            return super().search(vector, k, *args, **kwargs)

    keywords, index = MemoryKeywordIndex(), Spy(embedder.dimension)
    keywords.add(ids, texts)
    index.add(ids, vectors)
    curation = Curation(catalog, {ROOT.address})  # Alice has no reputation
    retriever = Retriever(catalog, index, keywords, embedder, standing=curation.standing)
    vector = embedder.embed(["claim about cells"])[0]
    best = retriever.rank(Query("claim about cells", k=5, mode=SearchMode.DENSE), vector)
    assert len(pools) == 1 and len(best) == 5

    pools.clear()  # a floor: 20 candidates (< k + 40), then 80, which holds the whole pool
    floor = Query("claim about cells", k=5, mode=SearchMode.DENSE, min_reputation=0.5)
    assert retriever.rank(floor, vector) == []
    assert pools == [20, 80]

    for rank in RankBy:  # min_score lets one hit through: the first search decides
        pools.clear()
        cut = best[0].score - 1e-6
        query = Query("claim about cells", k=5, mode=SearchMode.DENSE, min_score=cut, rank=rank)
        assert [r.fact.cid for r in retriever.rank(query, vector)] == [best[0].fact.cid]
        assert pools == [20], rank
    catalog.close()


def test_only_a_hybrid_querys_dense_pool_may_rank_by_compressed_vectors(tmp_path: Path) -> None:
    """Fusion uses only the dense ranks, so hybrid asks the index for an approximate pool;
    a dense query's scores are what it answers with, so it asks for exact ones."""
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    embedder = HashEmbedder()
    texts = [f"claim number {n} about cells" for n in range(30)]
    vectors = embedder.embed(texts)
    facts = [make_fact(t, {}, None) for t in texts]
    rows = catalog.insert([NewFact(f, v) for f, v in zip(facts, vectors, strict=True)])
    ids = np.array([row for row, _ in rows], dtype=np.int64)
    asked: list[bool] = []

    class Spy(MemoryVectorIndex):
        def search(self, *args: Any, exact: bool = True, **kwargs: Any) -> Any:
            asked.append(exact)
            return super().search(*args, exact=exact, **kwargs)

    keywords, index = MemoryKeywordIndex(), Spy(embedder.dimension)
    keywords.add(ids, texts)
    index.add(ids, vectors)
    retriever = Retriever(catalog, index, keywords, embedder)
    expected = {SearchMode.HYBRID: [False], SearchMode.DENSE: [True], SearchMode.KEYWORD: []}
    for mode, want in expected.items():
        asked.clear()
        query = Query("claim about cells", k=3, mode=mode)
        results = retriever.rank(query, embedder.embed([query.text])[0])
        assert len(results) == 3 and asked == want, mode
        assert all(r.relevance is not None for r in results)
    catalog.close()


def test_attestations_about_known_or_unsigned_facts_do_not_wait(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    unsigned = make_fact("A fact from a CAR, without a contributor.", {}, None)
    signed = make_fact("Alice's fact.", {}, ALICE.address)
    zero = np.zeros(384, dtype=np.float32)
    catalog.insert([NewFact(unsigned, zero), NewFact(signed, zero)])
    lookups: list[list[str]] = []
    original = catalog.contributors_of

    def counted(cids: Sequence[str]) -> dict[str, str | None]:
        lookups.append(list(cids))
        return original(cids)

    catalog.contributors_of = counted  # type: ignore[method-assign]
    curation = Curation(catalog, {ROOT.address})

    def store(key: SigningKey, cid: str, verdict: str, at: int) -> None:
        made = make_attestation(cid, verdict, key.address, at)
        curation.stored([SignedRecord(made, key.sign_cid(made.cid))])

    store(ROOT, unsigned.cid, "endorse", 1)
    store(ROOT, signed.cid, "endorse", 1)
    curation.recompute()
    assert len(lookups) == 1 and not curation._pending  # the unsigned fact is resolved too
    store(MALLORY, signed.cid, "dispute", 2)  # a fact the graph knows: no lookup
    store(ROOT, signed.cid, "dispute", 3)
    curation.recompute()
    assert len(lookups) == 1
    facts = catalog.get_by_ids([1, 2])
    unsigned_standing, signed_standing = curation.standing([facts[1], facts[2]])
    assert (unsigned_standing.endorsements, unsigned_standing.reputation) == (1, 0.0)
    assert (signed_standing.endorsements, signed_standing.disputes) == (0, 2)
    assert signed_standing.trusted_disputes == 1  # the root's; Mallory is not reached
    catalog.close()


def test_standing_of_unattested_facts_equals_the_full_rule(tmp_path: Path) -> None:
    # most hits have no attestation: standing computes those once per contributor
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    authors = [ROOT.address, ALICE.address] * 4
    facts = [make_fact(f"fact number {n}", {}, a) for n, a in enumerate(authors)]
    zero = np.zeros(384, dtype=np.float32)
    catalog.insert([NewFact(f, zero) for f in facts])
    curation = Curation(catalog, {ROOT.address})
    for key, fact, verdict in ((ALICE, facts[0], "dispute"), (MALLORY, facts[1], "endorse")):
        made = make_attestation(fact.cid, verdict, key.address, 1)
        curation.stored([SignedRecord(made, key.sign_cid(made.cid))])
    curation.recompute()
    stored = catalog.get_by_ids(catalog.all_ids().tolist())
    ordered = [stored[i] for i in sorted(stored)]
    standings = curation.standing(ordered)
    reputation = curation._reputation
    for row, standing in zip(ordered, standings, strict=True):
        endorsers, disputers = curation._graph.fact_attesters(row.cid)
        assert standing.weight == fact_weight(reputation, row.contributor, endorsers, disputers)
        assert standing.reputation == reputation.of(row.contributor)
        assert (standing.endorsements, standing.disputes) == (len(endorsers), len(disputers))
    assert standings[0].disputes == 1 and standings[1].endorsements == 1
    assert {s.weight for s in standings[2:]} == {1.0, 0.05}  # the root's, unreached Alice's
    catalog.close()
