"""Supersession in-process (real app, service and SQLite catalog): a contributor corrects a fact
with a version-2 record naming it; search then returns only the newest version (inside each
ranker) unless asked, GET shows superseded_by, and claims on someone else's fact change nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from index.sqlite_catalog import SqliteCatalog
from node.errors import InvalidFact
from node.facts import make_fact
from node.kinds import decode_record
from node.origin import Origin
from node.ports import NewFact
from node.records import SignedRecord
from node.signing import SigningKey
from node.tombstone import make_tombstone
from tests.memory_nodes import memory_node

OPERATOR = SigningKey.generate()
ALICE = SigningKey.generate()
MALLORY = SigningKey.generate()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: memory_node(tmp_path, OPERATOR))) as test_client:
        yield test_client


def post(client: TestClient, key: SigningKey, text: str, supersedes: str | None = None) -> str:
    fact = make_fact(text, None, key.address, supersedes)
    body: dict[str, Any] = {"text": text, "contributor": key.address}
    body |= {"signature": key.sign_cid(fact.cid)}
    if supersedes is not None:
        body["supersedes"] = supersedes
    reply = client.post("/v1/facts", json=body)
    assert reply.status_code == 201, reply.text
    assert reply.json()["cid"] == fact.cid
    return fact.cid


def search(client: TestClient, text: str, include: bool = False) -> dict[str, set[str]]:
    out = {}
    for mode in ("keyword", "dense", "hybrid"):
        body = {"query": text, "k": 10, "mode": mode, "include_superseded": include}
        reply = client.post("/v1/query", json=body)
        assert reply.status_code == 200, reply.text
        out[mode] = {r["cid"] for r in reply.json()["results"]}
    return out


def test_version_2_records_leave_version_1_records_and_cids_alone() -> None:
    v1 = make_fact("Pluto is a planet.", None, ALICE.address)
    assert v1.record()["v"] == 1 and "supersedes" not in v1.record()
    v2 = make_fact("Pluto is a dwarf planet.", None, ALICE.address, v1.cid)
    assert v2.record() == {
        "v": 2,
        "text": "Pluto is a dwarf planet.",
        "metadata": {},
        "contributor": ALICE.address,
        "supersedes": v1.cid,
    }
    assert decode_record(v2.block) == v2
    with pytest.raises(InvalidFact, match="contributor"):
        make_fact("No author, no correction.", None, None, v1.cid)
    with pytest.raises(InvalidFact, match="supersedes"):
        make_fact(
            "Bad target.", None, ALICE.address, "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
        )


def test_the_newest_version_replaces_the_earlier_in_search(client: TestClient) -> None:
    v1 = post(client, ALICE, "Pluto is the ninth planet of the solar system.")
    v2 = post(client, ALICE, "Pluto is a dwarf planet of the solar system.", supersedes=v1)
    for mode, found in search(client, "Pluto planet solar system").items():
        assert v2 in found and v1 not in found, mode
    for mode, found in search(client, "Pluto planet solar system", include=True).items():
        assert {v1, v2} <= found, mode
    old = client.get(f"/v1/facts/{v1}").json()
    assert old["superseded_by"] == v2 and old["record"]["v"] == 1
    new = client.get(f"/v1/facts/{v2}").json()
    assert new["record"]["supersedes"] == v1 and new["superseded_by"] is None
    hits = client.post(
        "/v1/query", json={"query": "Pluto", "k": 10, "mode": "keyword", "include_superseded": True}
    ).json()["results"]
    assert {h["cid"]: h.get("superseded_by") for h in hits} == {v1: v2, v2: None}
    # a third version replaces the second; only it is current
    v3 = post(client, ALICE, "Pluto is a dwarf planet in the Kuiper belt.", supersedes=v2)
    latest = search(client, "Pluto planet")
    assert all(v3 in f and not {v1, v2} & f for f in latest.values())


def test_nobody_supersedes_someone_elses_fact(client: TestClient) -> None:
    v1 = post(client, ALICE, "Water is wet at room temperature.")
    post(client, MALLORY, "Water is dry at room temperature.", supersedes=v1)
    assert client.get(f"/v1/facts/{v1}").json()["superseded_by"] is None
    assert all(v1 in f for f in search(client, "water wet room temperature").values())


@pytest.mark.parametrize(
    "supersedes",
    ["not-a-cid", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", 12, "", "\ud800"],
)
def test_hostile_supersedes_values_get_a_400(client: TestClient, supersedes: object) -> None:
    import json

    body = {"text": "x", "supersedes": supersedes}
    reply = client.post(
        "/v1/facts",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 400, reply.text
    assert client.get("/v1/status").json()["facts"] == 0


@pytest.mark.anyio
async def test_order_does_not_matter_and_a_revoked_correction_gives_the_place_back(
    tmp_path: Path,
) -> None:
    node = memory_node(tmp_path, OPERATOR)
    await node.start()
    try:
        v1 = make_fact("The Earth is 6,000 years old.", None, ALICE.address)
        v2 = make_fact("The Earth is 4.54 billion years old.", None, ALICE.address, v1.cid)
        # the correction arrives (by gossip) before the fact it corrects
        await node.contribute_many([SignedRecord(v2, ALICE.sign_cid(v2.cid))], origin=Origin.GOSSIP)
        await node.contribute_many([SignedRecord(v1, ALICE.sign_cid(v1.cid))], origin=Origin.SYNC)
        assert (await node.get_fact(v1.cid)).superseded_by == v2.cid
        tomb = make_tombstone(v2.cid, ALICE.address)
        await node.contribute_many([SignedRecord(tomb, ALICE.sign_cid(tomb.cid))])
        assert (await node.get_fact(v1.cid)).superseded_by is None
    finally:
        await node.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_inserting_a_fact_does_not_walk_its_contributors_other_facts(tmp_path: Path) -> None:
    # the link to a successor was looked up through the contributor index: every fact of a
    # bulk-loading key cost a walk over all of that key's earlier facts (300 -> 80 facts/s)
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    zero = np.zeros(8, dtype=np.float32)
    key = SigningKey.generate()
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    def cost_of_one_more(n: int) -> int:
        catalog.insert(
            [NewFact(make_fact(f"bulk fact {n}-{i}", {}, key.address), zero) for i in range(n)]
        )
        catalog._db.set_progress_handler(count, 100)
        steps[0] = 0
        catalog.insert([NewFact(make_fact(f"one more after {n}", {}, key.address), zero)])
        catalog._db.set_progress_handler(None, 100)
        return steps[0]

    small = cost_of_one_more(100)
    large = cost_of_one_more(3000)  # 3,100 facts by the key before it
    assert large < 2 * small + 50, (small, large)
    catalog.close()


def test_the_superseded_ids_are_read_again_only_when_they_change(tmp_path: Path) -> None:
    # every query asks for them: re-reading the whole table each time made a query's cost
    # grow with every correction ever stored
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    zero = np.zeros(8, dtype=np.float32)
    v1 = make_fact("The Earth is 6,000 years old.", None, ALICE.address)
    v2 = make_fact("The Earth is 4.54 billion years old.", None, ALICE.address, v1.cid)
    other = make_fact("Water boils at 100 C at sea level.", None, ALICE.address)
    try:
        [(v1_id, _)] = catalog.insert([NewFact(v1, zero)])
        first = catalog.superseded_ids()
        assert first.tolist() == []
        assert catalog.superseded_ids() is first  # unchanged: no new read
        catalog.insert([NewFact(other, zero)])  # a write that supersedes nothing
        assert catalog.superseded_ids() is first
        catalog.insert([NewFact(v2, zero)])
        second = catalog.superseded_ids()
        assert second.tolist() == [v1_id]
        assert not second.flags.writeable  # shared by every query: nobody may change it
        with pytest.raises(ValueError):
            second[0] = 0
        assert catalog.superseded_ids() is second
        catalog.erase_fact(v2.cid)  # the correction erased: v1 takes its place back
        assert catalog.superseded_ids().tolist() == []
    finally:
        catalog.close()


def test_a_reader_thread_sees_a_new_supersession_at_once(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    zero = np.zeros(8, dtype=np.float32)
    v1 = make_fact("Pluto is a planet.", None, ALICE.address)
    v2 = make_fact("Pluto is a dwarf planet.", None, ALICE.address, v1.cid)
    seen: list[list[int]] = []

    def read_on_another_thread() -> None:
        reader = threading.Thread(target=lambda: seen.append(catalog.superseded_ids().tolist()))
        reader.start()
        reader.join()

    try:
        [(v1_id, _)] = catalog.insert([NewFact(v1, zero)])
        read_on_another_thread()
        catalog.insert([NewFact(v2, zero)])
        read_on_another_thread()
        assert seen == [[], [v1_id]]
    finally:
        catalog.close()
