"""Operator moderation in-process (real app, service and SQLite catalog; hash embedder, memory
index and blocks): hidden facts are not served, searched or forwarded; only the operator's API
key hides; unhide restores; the catalog's keyword index and the vector index follow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.options import ApiOptions
from api.security import AccessPolicy
from index.sqlite_catalog import SqliteCatalog
from node.facts import make_fact
from node.memory import HashEmbedder, MemoryVectorIndex
from node.service import KnowledgeNode
from node.signing import SigningKey
from tests.memory_nodes import memory_node

OPERATOR = SigningKey.generate()
KEY = "operator-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Rig:
    def __init__(self, tmp_path: Path, keys: tuple[str, ...]) -> None:
        self.tmp_path = tmp_path
        self.index: MemoryVectorIndex | None = None
        access = AccessPolicy(api_keys=keys, public_reads=True)
        self.client = TestClient(create_app(self.make_node, ApiOptions(access=access)))

    def make_node(self) -> KnowledgeNode:
        self.index = MemoryVectorIndex(HashEmbedder().dimension)
        self.catalog = SqliteCatalog(self.tmp_path / "catalog.sqlite3")
        return memory_node(self.tmp_path, OPERATOR, index=self.index, catalog=self.catalog)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path, (KEY,))
    with made.client:
        yield made


def hits(client: TestClient, text: str) -> set[str]:
    out: set[str] = set()
    for mode in ("keyword", "dense", "hybrid"):
        body = {"query": text, "k": 10, "mode": mode}
        out |= {r["cid"] for r in client.post("/v1/query", json=body).json()["results"]}
    return out


def test_a_hidden_fact_is_not_served_searched_or_forwarded(rig: Rig) -> None:
    text = "Illegal content stand-in: the secret recipe."
    cid = rig.client.post("/v1/facts", json={"text": text}, headers=AUTH).json()["cid"]
    other = rig.client.post("/v1/facts", json={"text": "A recipe for bread."}, headers=AUTH)
    assert cid in hits(rig.client, "secret recipe")
    done = rig.client.post(
        "/v1/moderation/hidden", json={"cid": cid, "reason": "court order"}, headers=AUTH
    )
    assert done.status_code == 200 and done.json() == {"cid": cid, "status": "hidden"}
    again = rig.client.post("/v1/moderation/hidden", json={"cid": cid}, headers=AUTH)
    assert again.json()["status"] == "already_hidden"
    assert cid not in hits(rig.client, text)
    assert other.json()["cid"] in hits(rig.client, "recipe bread")
    reply = rig.client.get(f"/v1/facts/{cid}")
    assert reply.status_code == 451 and reply.json()["error"]["code"] == "hidden"
    assert rig.client.get(f"/ipfs/{cid}?format=raw").status_code == 451
    # not handed to peers by sync, though the catalog still knows it (no refetch)
    assert rig.catalog.signed_records([cid]) == []
    assert rig.catalog.existing([cid]) != {}
    status = rig.client.get("/v1/status").json()
    assert status["moderation"] == {"hidden": 1} and status["facts"] == 2
    listing = rig.client.get("/v1/moderation/hidden", headers=AUTH).json()
    assert listing["count"] == 1 and listing["hidden"][0]["reason"] == "court order"
    # unhide: served and searchable again
    back = rig.client.delete(f"/v1/moderation/hidden/{cid}", headers=AUTH)
    assert back.json()["status"] == "unhidden"
    assert rig.client.get(f"/v1/facts/{cid}").status_code == 200
    assert cid in hits(rig.client, text)
    assert rig.client.get("/v1/status").json()["moderation"] == {"hidden": 0}


def test_only_the_operator_moderates(rig: Rig, tmp_path: Path) -> None:
    cid = rig.client.post("/v1/facts", json={"text": "Kept."}, headers=AUTH).json()["cid"]
    assert rig.client.post("/v1/moderation/hidden", json={"cid": cid}).status_code == 401
    wrong = {"Authorization": "Bearer " + "x" * 32}
    assert (
        rig.client.post("/v1/moderation/hidden", json={"cid": cid}, headers=wrong).status_code
        == 401
    )
    assert rig.client.get(f"/v1/facts/{cid}").status_code == 200
    # a node without API keys has no operator to ask: moderation is refused to everyone
    open_node = Rig(tmp_path / "open", ())
    with open_node.client as client:
        cid = client.post("/v1/facts", json={"text": "Open node fact."}).json()["cid"]
        assert client.post("/v1/moderation/hidden", json={"cid": cid}).status_code == 401
        assert client.get(f"/v1/facts/{cid}").status_code == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"cid": "not-a-cid"}, 400),
        ({"cid": make_fact("never stored").cid}, 404),
        ({"cid": make_fact("x").cid, "reason": "r" * 5000}, 400),
        ({"cid": make_fact("x").cid, "extra": 1}, 400),
        ({}, 400),
    ],
)
def test_hostile_moderation_requests_get_a_clear_4xx(
    rig: Rig, body: dict[str, object], code: int
) -> None:
    reply = rig.client.post("/v1/moderation/hidden", json=body, headers=AUTH)
    assert reply.status_code == code, reply.text
    assert rig.client.get("/v1/status").json()["moderation"] == {"hidden": 0}


def test_hidden_stays_hidden_across_a_restart_and_an_index_rebuild(tmp_path: Path) -> None:
    rig = Rig(tmp_path, (KEY,))
    with rig.client as client:
        cid = client.post(
            "/v1/facts", json={"text": "Hidden across restarts."}, headers=AUTH
        ).json()["cid"]
        client.post("/v1/moderation/hidden", json={"cid": cid}, headers=AUTH)
    again = Rig(tmp_path, (KEY,))  # a fresh, empty memory index: rebuilt from the catalog
    with again.client as client:
        assert client.get(f"/v1/facts/{cid}").status_code == 451
        assert cid not in hits(client, "Hidden across restarts.")
        assert again.index is not None and len(again.index) == 0
        assert client.get("/v1/status").json()["integrity"]["lost_from_catalog"] == 0
