"""Near-duplicates (issue 20): a fact that repeats a stored one (same words after
normalisation, whoever wrote it; or nearly the same embedding by the same contributor) is
stored, linked and left out of search, so flooding one claim in many spellings gives one
result; erasing the original hands its place to the oldest repeat."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from index.sqlite_catalog import SqliteCatalog
from node.facts import make_fact, text_key
from node.ports import NewFact
from node.signing import SigningKey
from tests.memory_nodes import memory_node
from tests.signed_bodies import signed_fact

OPERATOR = SigningKey.generate()
ALICE = SigningKey.generate()
BOB = SigningKey.generate()
ZERO = np.zeros(384, dtype=np.float32)
LONG = " ".join(f"word{n}" for n in range(40))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: memory_node(tmp_path, OPERATOR))) as test_client:
        yield test_client


def contribute(client: TestClient, key: SigningKey, text: str) -> str:
    reply = client.post("/v1/facts", json=signed_fact(key, text))
    assert reply.status_code == 201, reply.text
    return str(reply.json()["cid"])


def found(client: TestClient, text: str) -> list[str]:
    body = {"query": text, "k": 10, "mode": "keyword", "rank": "relevance"}
    return [h["cid"] for h in client.post("/v1/query", json=body).json()["results"]]


def test_text_keys_ignore_case_spacing_and_punctuation_only() -> None:
    assert text_key("Vitamin C cures flu.") == text_key("  vitamin c  CURES flu!!")
    assert text_key("Vitamin C cures flu.") == text_key("Vitamin\u00a0C cures\nflu")
    assert text_key("Vitamin C cures flu.") != text_key("Vitamin C cures the flu.")
    assert text_key("Ｖｉｔａｍｉｎ C") == text_key("vitamin c")  # NFKC


def test_a_flood_of_spellings_gives_one_search_result(client: TestClient) -> None:
    first = contribute(client, ALICE, "Vitamin C cures influenza.")
    copies = [
        contribute(client, key, text)
        for key, text in (
            (BOB, "vitamin c cures influenza"),
            (BOB, "VITAMIN C CURES INFLUENZA!!!"),
            (ALICE, "Vitamin  C, cures influenza"),
        )
    ]
    assert found(client, "vitamin influenza") == [first]
    for cid in copies:
        got = client.get(f"/v1/facts/{cid}").json()
        assert got["duplicate_of"] == first  # kept, readable, linked
    assert "duplicate_of" not in client.get(f"/v1/facts/{first}").json()


def test_nearly_the_same_embedding_links_only_the_same_contributor(client: TestClient) -> None:
    first = contribute(client, ALICE, LONG + " alpha")
    mine = contribute(client, ALICE, LONG + " beta")  # cosine 40/41 with the hash embedder
    theirs = contribute(client, BOB, LONG + " gamma")
    assert client.get(f"/v1/facts/{mine}").json()["duplicate_of"] == first
    assert "duplicate_of" not in client.get(f"/v1/facts/{theirs}").json()
    assert set(found(client, "word1 word2")) == {first, theirs}


def test_erasing_the_original_hands_its_place_to_the_oldest_repeat(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    facts = [make_fact(t, {}, ALICE.address) for t in ("Same claim.", "same CLAIM", "Same claim!")]
    rows = catalog.insert([NewFact(f, ZERO) for f in facts])
    ids = [row for row, _ in rows]
    assert catalog.duplicates_among(ids) == set(ids[1:])
    assert catalog.ids().tolist() == ids[:1]
    assert catalog.erase_fact(facts[0].cid) == ids[0]
    assert catalog.ids().tolist() == ids[1:2]
    assert catalog.duplicate_of(facts[2].cid) == facts[1].cid
    catalog.close()


def test_a_catalog_from_before_duplicates_gets_its_text_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    catalog = SqliteCatalog(path)
    fact = make_fact("An old fact.", {}, None)
    catalog.insert([NewFact(fact, ZERO)])
    with catalog._cursor(write=True) as cur:  # as an older node left it
        cur.execute("DELETE FROM text_keys")
        cur.execute("DELETE FROM settings WHERE key = 'text_keys_seeded'")
    catalog.close()
    reopened = SqliteCatalog(path)
    copy = make_fact("an OLD fact", {}, ALICE.address)
    ((_, created),) = reopened.insert([NewFact(copy, ZERO)])
    assert created
    assert reopened.duplicate_of(copy.cid) == fact.cid
    reopened.close()


def test_texts_that_state_different_numbers_are_never_near_duplicates(client: TestClient) -> None:
    first = contribute(client, ALICE, LONG + " boils at 100")
    other = contribute(client, ALICE, LONG + " boils at 90")  # cosine 40/42 with hash-bow
    again = contribute(client, ALICE, LONG + " boils at 100 indeed")
    assert "duplicate_of" not in client.get(f"/v1/facts/{other}").json()
    assert client.get(f"/v1/facts/{again}").json()["duplicate_of"] == first
    status = client.get("/v1/status").json()
    assert status["index"]["duplicates"] == 1
    assert status["index"]["size"] == status["facts"] - 1
