"""Collections, step 1 (node.collections): the record's ``collection`` key (canonical, version
2 only when not the default), the catalog column and its migration, the REST write path's
refusal (409 collection_not_held), peers' facts of other collections dropped before embedding,
queries restricted inside the rankers, and hostile values refused."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import dag_cbor
import httpx2 as httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from index.sqlite_catalog import SqliteCatalog
from node.collections import Collections
from node.errors import ConfigError, InvalidFact
from node.facts import decode_fact, make_fact
from node.kinds import decode_record, verify_record
from node.memory import HashEmbedder, MemoryKeywordIndex, MemoryVectorIndex
from node.origin import Origin
from node.ports import Ids, NewFact, Vectors
from node.records import SignedRecord
from node.retrieval import Retriever
from node.search import Query, SearchMode
from node.service import NodeOptions
from node.settings import Settings
from node.signing import SigningKey
from tests.conftest import ROOT
from tests.memory_nodes import memory_node

OPERATOR = SigningKey.generate()
ALICE = SigningKey.generate()
VECTORS = json.loads((ROOT / "docs" / "vectors" / "p2p.json").read_text())
HOSTILE_NAMES: list[object] = ["", "Medicine", "a" * 65, 7, None, "\ud800", ".x", "a b", "é"]


class CountingEmbedder(HashEmbedder):
    """The hash fake, remembering every text it embedded."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.texts.extend(texts)
        return super().embed(texts)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the record -------------------------------------------------------------------------------


def test_the_default_collection_is_never_written_and_keeps_every_cid() -> None:
    plain = make_fact("Water boils at 100 degrees.", {"lang": "en"}, ALICE.address)
    default = make_fact(
        "Water boils at 100 degrees.", {"lang": "en"}, ALICE.address, None, "default"
    )
    assert default.block == plain.block and default.cid == plain.cid
    assert plain.collection == "default" and "collection" not in plain.record()
    assert plain.record()["v"] == 1
    for vector in VECTORS["facts"]:  # the committed version-1 vectors decode to the same CID
        fact = decode_fact(bytes.fromhex(vector["block"]))
        assert fact.cid == vector["cid"] and fact.collection == "default"


def test_a_fact_in_a_collection_is_version_2_with_or_without_supersedes() -> None:
    fact = make_fact("Aspirin inhibits COX.", None, ALICE.address, collection="medicine")
    assert fact.record()["v"] == 2 and fact.record()["collection"] == "medicine"
    assert decode_fact(fact.block) == fact
    plain = make_fact("Aspirin inhibits COX.", None, ALICE.address)
    assert plain.cid != fact.cid
    both = make_fact("Aspirin inhibits COX-1.", None, ALICE.address, plain.cid, "medicine")
    assert decode_fact(both.block).supersedes == plain.cid
    assert decode_fact(both.block).collection == "medicine"
    vector = VECTORS["collection_fact"]
    record = verify_record(bytes.fromhex(vector["block"]), vector["signature"])
    assert record.cid == vector["cid"] and record.body.record() == vector["record"]


@pytest.mark.parametrize("bad", VECTORS["invalid_collection_facts"], ids=lambda b: b["why"])
def test_invalid_collection_vectors_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(InvalidFact):
        decode_record(bytes.fromhex(bad["block"]))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_collection_names_are_invalid_facts(name: object) -> None:
    with pytest.raises(InvalidFact) as caught:
        make_fact("A fact.", None, None, None, name)
    assert caught.value.field == "collection"


def test_the_explicit_default_in_a_record_is_not_canonical() -> None:
    plain = make_fact("A fact.", None, ALICE.address)
    with pytest.raises(InvalidFact, match="never written"):
        decode_fact(dag_cbor.encode({**plain.record(), "v": 2, "collection": "default"}))


# -- the setting ------------------------------------------------------------------------------


def test_the_setting_parses_names_or_star_and_refuses_bad_names() -> None:
    assert Collections.parse("*").all
    held = Collections.parse(" medicine, law ")
    assert held.holds("law") and not held.holds("default") and held.held() == ["law", "medicine"]
    for bad in ("", "Medicine", "a,,b", "*,law"):
        with pytest.raises(ConfigError, match="KNOWHUB_COLLECTIONS"):
            Collections.parse(bad)
    assert Settings(collections="law").collections == "law"
    with pytest.raises(ValueError, match="not a collection name"):
        Settings(collections="Law")


# -- the catalog ------------------------------------------------------------------------------


def test_an_old_catalog_gains_the_column_and_its_facts_are_in_the_default(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    catalog = SqliteCatalog(path)
    fact = make_fact("An old fact.", None, ALICE.address)
    catalog.insert([NewFact(fact, np.ones(4, dtype=np.float32))])
    catalog.close()
    with sqlite3.connect(path) as db:  # as a catalog written before collections
        db.execute("DROP INDEX facts_collection")
        db.execute("ALTER TABLE facts DROP COLUMN collection")
    catalog = SqliteCatalog(path)
    try:
        stored = catalog.get(fact.cid)
        assert stored is not None and stored.collection == "default"
        assert stored.record() == fact.record()
        assert catalog.collection_counts() == {"default": 1}
        new = make_fact("A new fact.", None, ALICE.address, collection="law")
        catalog.insert([NewFact(new, np.ones(4, dtype=np.float32))])
        assert catalog.collection_counts() == {"default": 1, "law": 1}
        assert list(catalog.collection_ids(["law"])) == [catalog.existing([new.cid])[new.cid]]
        assert len(catalog.collection_ids(["default", "law"])) == 2
        assert len(catalog.collection_ids(["nothing"])) == 0
    finally:
        catalog.close()


# -- REST -------------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: memory_node(tmp_path, OPERATOR))) as test_client:
        yield test_client


@pytest.fixture
def held_client(tmp_path: Path) -> Iterator[TestClient]:
    options = NodeOptions(data_dir=tmp_path, collections=Collections.of(["medicine"]))
    node = lambda: memory_node(tmp_path, OPERATOR, options=options)  # noqa: E731
    with TestClient(create_app(node)) as test_client:
        yield test_client


def test_contribute_to_a_collection_and_query_restricted_to_it(client: TestClient) -> None:
    med = client.post("/v1/facts", json={"text": "Aspirin thins blood.", "collection": "medicine"})
    assert med.status_code == 201, med.text
    plain = client.post("/v1/facts", json={"text": "Aspirin is sold in shops."})
    batch = client.post(
        "/v1/facts/batch", json={"facts": [{"text": "Aspirin law.", "collection": "law"}]}
    )
    assert batch.json()["created"] == 1
    got = client.get(f"/v1/facts/{med.json()['cid']}").json()["record"]
    assert got["v"] == 2 and got["collection"] == "medicine"
    assert "collection" not in client.get(f"/v1/facts/{plain.json()['cid']}").json()["record"]

    def cids(**extra: object) -> set[str]:
        body = {"query": "aspirin", "k": 10, "mode": "keyword", **extra}
        reply = client.post("/v1/query", json=body)
        assert reply.status_code == 200, reply.text
        return {hit["cid"] for hit in reply.json()["results"]}

    assert len(cids()) == 3
    assert cids(collections=["medicine"]) == {med.json()["cid"]}
    assert cids(collections=["default"]) == {plain.json()["cid"]}
    assert cids(collections=["unknown"]) == set()
    assert len(cids(collections=["medicine", "law"], mode="hybrid")) == 2
    status = client.get("/v1/status").json()["collections"]
    assert status == {"held": "*", "facts": {"default": 1, "medicine": 1, "law": 1}}


def test_a_signed_fact_covers_its_collection(client: TestClient) -> None:
    fact = make_fact("Signed in a collection.", None, ALICE.address, collection="law")
    body = {"text": fact.text, "contributor": ALICE.address, "signature": ALICE.sign_cid(fact.cid)}
    assert client.post("/v1/facts", json={**body, "collection": "law"}).status_code == 201
    wrong = client.post("/v1/facts", json={**body, "collection": "medicine"})
    assert wrong.status_code == 401 and client.get("/v1/status").json()["facts"] == 1


def test_a_node_refuses_a_collection_it_does_not_hold(held_client: TestClient) -> None:
    refused = held_client.post("/v1/facts", json={"text": "A legal fact.", "collection": "law"})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "collection_not_held" and "medicine" in error["message"]
    default = held_client.post("/v1/facts", json={"text": "A default fact."})
    assert default.status_code == 409
    batch = held_client.post(
        "/v1/facts/batch",
        json={
            "facts": [
                {"text": "Law.", "collection": "law"},
                {"text": "Med.", "collection": "medicine"},
            ]
        },
    )
    assert batch.json()["created"] == 1 and batch.json()["failed"] == 1
    assert batch.json()["results"][0]["error"]["code"] == "collection_not_held"
    status = held_client.get("/v1/status").json()
    assert status["facts"] == 1 and status["collections"]["held"] == ["medicine"]
    assert status["ingest"]["other_collections"] == 0  # refused writers are not peers' drops
    hits = held_client.post("/v1/query", json={"query": "med", "mode": "keyword"}).json()
    assert len(hits["results"]) == 1


def post_json(client: TestClient, path: str, body: object) -> httpx.Response:
    """JSON with escapes (``\\ud800`` as a lone surrogate's escape, as a hostile client sends)."""
    content = json.dumps(body).encode()
    return client.post(path, content=content, headers={"content-type": "application/json"})


@pytest.mark.parametrize("value", [*HOSTILE_NAMES, ["medicine"], {"a": 1}])
def test_hostile_collection_values_get_a_400(client: TestClient, value: object) -> None:
    if value is None:
        return  # null is the default collection
    reply = post_json(client, "/v1/facts", {"text": "A fact.", "collection": value})
    assert reply.status_code == 400, reply.text
    assert client.get("/v1/status").json()["facts"] == 0


@pytest.mark.parametrize(
    "value",
    ["medicine", {"a": "b"}, [7], ["Medicine"], [""], ["a" * 65], ["x"] * 33, ["\ud800"], [None]],
)
def test_hostile_collections_in_a_query_get_a_400(client: TestClient, value: object) -> None:
    reply = post_json(client, "/v1/query", {"query": "anything", "collections": value})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"]


# -- peers' facts -----------------------------------------------------------------------------


def signed(text: str, collection: str) -> SignedRecord:
    fact = make_fact(text, None, ALICE.address, collection=collection)
    return SignedRecord(fact, ALICE.sign_cid(fact.cid))


@pytest.mark.anyio
async def test_peers_facts_of_other_collections_are_dropped_before_embedding(
    tmp_path: Path,
) -> None:
    embedder = CountingEmbedder()
    options = NodeOptions(data_dir=tmp_path, collections=Collections.of(["medicine"]))
    node = memory_node(tmp_path, OPERATOR, options=options, embedder=embedder)
    await node.start()
    try:
        gossip = [
            signed("Gossiped law fact.", "law"),
            signed("Gossiped medicine fact.", "medicine"),
        ]
        assert await node._receive(gossip, Origin.GOSSIP) == 1
        assert await node._receive([signed("Synced default fact.", "default")], Origin.SYNC) == 0
        outcomes = await node.contribute_many(
            [signed("Imported law fact.", "law")], origin=Origin.CAR
        )
        assert all(getattr(o, "code", None) == "collection_not_held" for o in outcomes)
        assert embedder.texts == ["Gossiped medicine fact."]
        status = await node.status()
        assert status.ingest.other_collections == 3 and status.facts == 1
        assert status.collections is not None and status.collections.facts == {"medicine": 1}
    finally:
        await node.close()


def test_a_narrowed_node_hides_older_facts_of_collections_it_no_longer_holds(
    tmp_path: Path,
) -> None:
    # The held restriction costs a read of every held fact's id per query: it applies only
    # when the catalog stores facts outside the held collections (from before the node
    # narrowed them; no write path stores such facts afterwards).
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    embedder = HashEmbedder()
    facts = [
        make_fact("Aspirin thins blood.", None, None, collection="medicine"),
        make_fact("Aspirin law applies.", None, None, collection="law"),
    ]
    vectors = embedder.embed([f.text for f in facts])
    rows = catalog.insert([NewFact(f, v) for f, v in zip(facts, vectors, strict=True)])
    ids = np.array([row for row, _ in rows], dtype=np.int64)
    reads: list[tuple[str, ...]] = []
    original = catalog.collection_ids

    def counted(names: Sequence[str]) -> Ids:
        reads.append(tuple(names))
        return original(names)

    catalog.collection_ids = counted  # type: ignore[method-assign]

    def retriever(held: list[str]) -> Retriever:
        keywords, index = MemoryKeywordIndex(), MemoryVectorIndex(embedder.dimension)
        keywords.add(ids, [f.text for f in facts])
        index.add(ids, vectors)
        return Retriever(catalog, index, keywords, embedder, collections=Collections.of(held))

    query = Query("aspirin", k=5, mode=SearchMode.KEYWORD)
    narrowed = retriever(["medicine"])  # the law fact predates the narrowing
    assert [r.fact.text for r in narrowed.rank(query, None)] == [facts[0].text]
    assert reads == [("medicine",)]
    both = retriever(["law", "medicine"])  # everything stored is held: no per-query read
    assert len(both.rank(query, None)) == 2 and len(both.rank(query, None)) == 2
    assert reads == [("medicine",)]
    assert [r.fact.text for r in both.rank(replace(query, collections=("law",)), None)] == [
        facts[1].text
    ]
    catalog.close()
