"""Revocation in-process: tombstones through the REST API and the write path, on the real app,
the service and a real SQLite catalog (hash embedder, memory index and blocks). The same with
real node processes and gossip is in tests/integration/test_revocation.py."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.options import ApiOptions
from api.security import AccessPolicy
from index.bm25_index import Bm25Index
from index.sqlite_catalog import SqliteCatalog
from node.cid import cid_string
from node.errors import NotContributor, NotFound, Revoked
from node.facts import make_fact
from node.kinds import decode_record, verify_record
from node.memory import MemoryContentStore
from node.origin import Origin
from node.ports import NewFact
from node.records import SignedRecord
from node.search import Query, SearchMode
from node.service import KnowledgeNode
from node.signing import SigningKey
from node.tombstone import make_tombstone
from tests.memory_nodes import memory_node

OPERATOR = SigningKey.generate()
ALICE = SigningKey.generate()
MALLORY = SigningKey.generate()
API_KEY = "k" * 32


class Rig:
    def __init__(self, tmp_path: Path, api_keys: tuple[str, ...] = ()) -> None:
        self.tmp_path = tmp_path
        self.store = MemoryContentStore()
        self.nodes: list[KnowledgeNode] = []
        options = ApiOptions(access=AccessPolicy(api_keys=api_keys))
        self.client = TestClient(create_app(self.make_node, options))

    def make_node(self) -> KnowledgeNode:
        # the real keyword index with its file: erasure must take the words off the disk
        keywords = Bm25Index(path=self.tmp_path / "keywords.bm25")
        node = memory_node(self.tmp_path, OPERATOR, store=self.store, keywords=keywords)
        self.nodes.append(node)
        return node

    @property
    def node(self) -> KnowledgeNode:
        return self.nodes[-1]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    with made.client:
        yield made


def signed_fact(key: SigningKey, text: str) -> dict[str, Any]:
    fact = make_fact(text, {"topic": "test"}, key.address)
    return {
        "text": text,
        "metadata": {"topic": "test"},
        "contributor": key.address,
        "signature": key.sign_cid(fact.cid),
    }


def contribute(client: TestClient, body: dict[str, Any]) -> str:
    reply = client.post("/v1/facts", json=body)
    assert reply.status_code in (200, 201), reply.text
    return str(reply.json()["cid"])


def revoke_body(
    client: TestClient, cid: str, key: SigningKey, reason: str | None = None
) -> dict[str, str]:
    params = {"contributor": key.address} | ({"reason": reason} if reason else {})
    template = client.get(f"/v1/facts/{cid}/tombstone", params=params)
    assert template.status_code == 200, template.text
    got = template.json()
    block = base64.b64decode(got["block"])
    assert decode_record(block).cid == got["cid"]  # the CID is recomputed, not trusted
    body = {"contributor": key.address, "signature": key.sign_cid(got["cid"])}
    return body | ({"reason": reason} if reason else {})


def hits(client: TestClient, text: str, mode: str) -> list[str]:
    reply = client.post("/v1/query", json={"query": text, "k": 10, "mode": mode})
    assert reply.status_code == 200, reply.text
    return [r["cid"] for r in reply.json()["results"]]


def test_a_revoked_fact_is_gone_everywhere_and_the_tombstone_says_why(rig: Rig) -> None:
    text = "Glass is a slow-flowing liquid at room temperature."
    cid = contribute(rig.client, signed_fact(ALICE, text))
    other = contribute(rig.client, signed_fact(ALICE, "Glass is an amorphous solid."))
    assert cid in hits(rig.client, "glass liquid", "keyword")
    reply = rig.client.request(
        "DELETE", f"/v1/facts/{cid}", json=revoke_body(rig.client, cid, ALICE, "a myth")
    )
    assert reply.status_code == 201, reply.text
    tombstone = reply.json()["tombstone"]
    assert reply.json() == {"tombstone": tombstone, "revokes": cid, "status": "created"}
    for mode in ("keyword", "dense", "hybrid"):
        assert cid not in hits(rig.client, text, mode)
    assert other in hits(rig.client, "glass", "keyword")
    gone = rig.client.get(f"/v1/facts/{cid}")
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "revoked"
    assert gone.json()["error"]["tombstone"] == tombstone
    assert rig.client.get(f"/ipfs/{cid}?format=raw").status_code == 410
    # the tombstone is a record like any other: its block, its provenance
    assert rig.client.get(f"/ipfs/{tombstone}?format=raw").status_code == 200
    prov = rig.client.get(f"/v1/facts/{tombstone}/provenance").json()
    assert prov["record"] == {
        "v": 1,
        "kind": "tombstone",
        "revokes": cid,
        "contributor": ALICE.address,
        "reason": "a myth",
    }
    status = rig.client.get("/v1/status").json()
    assert status["facts"] == 1
    assert status["revocations"]["tombstones"] == 1 and status["revocations"]["erased"] == 1
    # the block leaves the content store (the purge runs in the background)
    deadline = time.monotonic() + 60
    while cid in rig.store.blocks and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cid not in rig.store.blocks
    # again: the same tombstone, not a new one
    again = rig.client.request("DELETE", f"/v1/facts/{cid}", json=revoke_body_for_gone(rig, cid))
    assert again.status_code == 200 and again.json()["tombstone"] == tombstone
    # and the fact cannot come back
    back = rig.client.post("/v1/facts", json=signed_fact(ALICE, text))
    assert back.status_code == 410 and back.json()["error"]["tombstone"] == tombstone


def revoke_body_for_gone(rig: Rig, cid: str) -> dict[str, str]:
    return {"contributor": ALICE.address, "signature": ALICE.sign_cid(cid)}  # not even looked at


def test_the_text_leaves_the_catalog_files(rig: Rig) -> None:
    text = "An unmistakable sentence: zebra quartz violin 4711."
    cid = contribute(rig.client, signed_fact(ALICE, text))
    reply = rig.client.request(
        "DELETE", f"/v1/facts/{cid}", json=revoke_body(rig.client, cid, ALICE)
    )
    assert reply.status_code == 201
    for path in rig.tmp_path.glob("catalog.sqlite3*"):
        assert b"zebra quartz violin" not in path.read_bytes(), path
    keywords = (rig.tmp_path / "keywords.bm25").read_bytes()  # saved at once by the erasure
    for word in (b"zebra", b"quartz", b"violin", b"4711"):
        assert word not in keywords, word
    hits = rig.client.post("/v1/query", json={"query": "zebra quartz", "mode": "keyword"})
    assert hits.json()["results"] == []


def test_only_the_contributor_can_revoke(rig: Rig) -> None:
    cid = contribute(rig.client, signed_fact(ALICE, "Alice's fact that Mallory wants gone."))
    # Mallory signs a tombstone naming herself: not the contributor (403), nothing changes
    refused = rig.client.request(
        "DELETE", f"/v1/facts/{cid}", json=revoke_body(rig.client, cid, MALLORY)
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_contributor"
    # Mallory claims to be Alice: the signature does not recover to her (401)
    forged = revoke_body(rig.client, cid, ALICE) | {"signature": MALLORY.sign_cid(cid)}
    reply = rig.client.request("DELETE", f"/v1/facts/{cid}", json=forged)
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "signature_mismatch"
    # no signature and no API key: not the operator either
    bare = rig.client.request("DELETE", f"/v1/facts/{cid}")
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "signature_required"
    assert rig.client.get(f"/v1/facts/{cid}").status_code == 200
    assert rig.client.get("/v1/status").json()["revocations"]["tombstones"] == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"contributor": "0x" + "ab" * 20, "signature": "0x" + "11" * 65}, 400),
        (b'{"reason": "\\ud800"}', 400),  # a lone surrogate
        ({"reason": "x" * 5000}, 400),
        ({"reason": "   "}, 400),
        ({"signature": "0xzz"}, 400),
        ({"unknown": 1}, 400),
    ],
)
def test_hostile_revocations_get_a_clear_4xx_and_change_nothing(
    rig: Rig, body: dict[str, Any] | bytes, code: int
) -> None:
    cid = contribute(rig.client, signed_fact(ALICE, "A fact under attack."))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = rig.client.request(
        "DELETE", f"/v1/facts/{cid}", content=content, headers={"content-type": "application/json"}
    )
    assert reply.status_code == code, reply.text
    assert rig.client.get(f"/v1/facts/{cid}").status_code == 200


def test_odd_cids_and_unknown_facts(rig: Rig) -> None:
    assert rig.client.request("DELETE", "/v1/facts/not-a-cid").status_code == 400
    unknown = make_fact("never stored here").cid
    assert rig.client.request("DELETE", f"/v1/facts/{unknown}").status_code == 404
    v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
    assert rig.client.request("DELETE", f"/v1/facts/{v0}").status_code == 404


def test_the_operator_revokes_what_the_node_signed_with_an_api_key(tmp_path: Path) -> None:
    made = Rig(tmp_path, api_keys=(API_KEY,))
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with made.client as client:
        reply = client.post("/v1/facts", json={"text": "Signed by the operator."}, headers=auth)
        cid = reply.json()["cid"]
        alice = client.post("/v1/facts", json=signed_fact(ALICE, "Alice's own."), headers=auth)
        assert client.request("DELETE", f"/v1/facts/{cid}").status_code == 401  # no key
        done = client.request("DELETE", f"/v1/facts/{cid}", headers=auth)
        assert done.status_code == 201, done.text
        assert client.get(f"/v1/facts/{cid}").status_code == 410
        # the operator key cannot revoke someone else's fact
        theirs = client.request("DELETE", f"/v1/facts/{alice.json()['cid']}", headers=auth)
        assert theirs.status_code == 403


@pytest.mark.anyio
async def test_a_tombstone_before_its_fact_wins(tmp_path: Path) -> None:
    node = Rig(tmp_path).make_node()
    await node.start()
    try:
        fact = make_fact("Arrives after its own tombstone.", None, ALICE.address)
        tomb = make_tombstone(fact.cid, ALICE.address)
        (stored,) = await node.contribute_many(
            [SignedRecord(tomb, ALICE.sign_cid(tomb.cid))], origin=Origin.GOSSIP
        )
        assert not isinstance(stored, Exception) and stored.created
        (late,) = await node.contribute_many(
            [SignedRecord(fact, ALICE.sign_cid(fact.cid))], origin=Origin.SYNC
        )
        assert isinstance(late, Revoked) and late.tombstone == tomb.cid
        with pytest.raises(Revoked):
            await node.get_fact(fact.cid)
        # a tombstone by someone else for a fact not here is kept (harmless) but never applies
        other = make_fact("Mallory cannot pre-revoke this.", None, ALICE.address)
        forged = make_tombstone(other.cid, MALLORY.address)
        await node.contribute_many([SignedRecord(forged, MALLORY.sign_cid(forged.cid))])
        (kept,) = await node.contribute_many([SignedRecord(other, ALICE.sign_cid(other.cid))])
        assert not isinstance(kept, Exception) and kept.created
        # once the fact is here, Mallory's tombstone is refused as not the contributor's
        again = make_tombstone(other.cid, MALLORY.address, "again")
        (refused,) = await node.contribute_many([SignedRecord(again, MALLORY.sign_cid(again.cid))])
        assert isinstance(refused, NotContributor)
    finally:
        await node.close()


@pytest.mark.anyio
async def test_a_fact_and_its_tombstone_in_one_batch_end_revoked(tmp_path: Path) -> None:
    node = Rig(tmp_path).make_node()
    await node.start()
    try:
        fact = make_fact("Stored and revoked in one breath.", None, ALICE.address)
        tomb = make_tombstone(fact.cid, ALICE.address)
        await node.contribute_many(
            [
                SignedRecord(fact, ALICE.sign_cid(fact.cid)),
                SignedRecord(tomb, ALICE.sign_cid(tomb.cid)),
            ]
        )
        with pytest.raises(Revoked):
            await node.get_fact(fact.cid)
    finally:
        await node.close()


@pytest.mark.anyio
async def test_a_crash_between_tombstone_and_erasure_is_finished_at_start(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    node = rig.make_node()
    await node.start()
    fact = make_fact("Erased only after the restart.", None, ALICE.address)
    await node.contribute(SignedRecord(fact, ALICE.sign_cid(fact.cid)))
    await node.close()
    # the tombstone is stored but the erasure never ran (the process died in between)
    tomb = make_tombstone(fact.cid, ALICE.address)
    catalog = SqliteCatalog(tmp_path / "catalog.sqlite3")
    catalog.put_records([verify_record(tomb.block, ALICE.sign_cid(tomb.cid))], anchor=True)
    catalog.close()
    node = rig.make_node()
    await node.start()
    try:
        with pytest.raises(Revoked):
            await node.get_fact(fact.cid)
        for mode in SearchMode:
            found = await node.query(Query(fact.text, k=10, mode=mode))
            assert fact.cid not in [r.fact.cid for r in found.results]
    finally:
        await node.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_block_the_store_will_not_delete_is_given_up_and_counted(tmp_path: Path) -> None:
    from node.errors import StorageError
    from node.revocation import PURGE_ATTEMPTS, Revocations

    class Stubborn(MemoryContentStore):
        async def delete(self, cid: str) -> None:
            raise StorageError("pinned indirectly")

    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    revocations = Revocations(catalog, Stubborn())
    fact = make_fact("Pinned by a manifest elsewhere.", None, ALICE.address)
    catalog.insert([NewFact(fact, np.zeros(4, np.float32), ALICE.sign_cid(fact.cid))])
    tomb = make_tombstone(fact.cid, ALICE.address)
    record = SignedRecord(tomb, ALICE.sign_cid(tomb.cid))
    catalog.put_records([record], anchor=False)
    assert revocations.stored([record]) != []
    outcomes = [await revocations.purge() for _ in range(PURGE_ATTEMPTS)]
    assert outcomes == [False] * (PURGE_ATTEMPTS - 1) + [True]
    counts = revocations.counts()
    assert counts.purge_failed == 1 and counts.purge_pending == 0 and counts.erased == 1
    catalog.close()


@pytest.mark.anyio
async def test_a_revocation_travels_a_line_of_nodes_on_the_memory_network(
    tmp_path: Path,
) -> None:
    from node.memory_network import MemoryHub, MemoryNetwork

    hub = MemoryHub()
    nodes: list[KnowledgeNode] = []
    networks: list[MemoryNetwork] = []
    for i in range(3):
        previous = [networks[-1].address] if networks else []
        network = MemoryNetwork(hub, bootstrap=previous)
        networks.append(network)
        node = memory_node(tmp_path / f"n{i}", OPERATOR, network=network)
        await node.start()
        nodes.append(node)
    first, last = nodes[0], nodes[-1]

    async def eventually(check: Any) -> None:
        deadline = time.monotonic() + 60
        while not await check():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

    async def stored(node: KnowledgeNode, cid: str) -> bool:
        try:
            await node.get_fact(cid)
        except (Revoked, NotFound):
            return False
        return True

    try:
        fact = make_fact("Travels the line, then is taken back.", None, ALICE.address)
        await first.contribute(SignedRecord(fact, ALICE.sign_cid(fact.cid)))
        await eventually(lambda: stored(last, fact.cid))
        tomb = make_tombstone(fact.cid, ALICE.address)
        done = await first.revoke(
            fact.cid, contributor=ALICE.address, signature=ALICE.sign_cid(tomb.cid)
        )
        assert done.cid == tomb.cid and done.created

        async def erased() -> bool:
            try:
                await last.get_fact(fact.cid)
            except Revoked as exc:
                return exc.tombstone == tomb.cid
            return False

        await eventually(erased)
        # a forged tombstone gossiped to the middle node is rejected there, never forwarded
        other = make_fact("Alice's, and it stays.", None, ALICE.address)
        await first.contribute(SignedRecord(other, ALICE.sign_cid(other.cid)))
        await eventually(lambda: stored(last, other.cid))
        forged = make_tombstone(other.cid, MALLORY.address)
        networks[0].publish([SignedRecord(forged, MALLORY.sign_cid(forged.cid))])
        await eventually(lambda: _true(networks[1].status().messages_rejected >= 1))
        assert await stored(last, other.cid)
    finally:
        for node in nodes:
            await node.close()


async def _true(value: bool) -> bool:
    return value


def test_provenance_bundles_hash_back_to_their_cids(rig: Rig) -> None:
    # the JSON record is the record: optional keys are left out, never null, so a verifier
    # that re-encodes it gets the CID (a v1 fact, a reason-less tombstone, through the client
    # model too)
    from api.schemas import ProvenanceOut
    from node.provenance import check_bundle

    cid = contribute(rig.client, signed_fact(ALICE, "A version-1 fact, hashed back."))
    reply = rig.client.request(
        "DELETE", f"/v1/facts/{cid}", json=revoke_body(rig.client, cid, ALICE)
    )
    tombstone = reply.json()["tombstone"]
    other = contribute(rig.client, signed_fact(ALICE, "Another version-1 fact."))
    for target in (other, tombstone):
        raw = rig.client.get(f"/v1/facts/{target}/provenance").json()
        assert "supersedes" not in raw["record"] and "reason" not in raw["record"]
        for bundle in (raw, ProvenanceOut.model_validate(raw).model_dump(mode="json")):
            checks = {c.name: c.ok for c in check_bundle(bundle, None)}
            assert checks["cid"] and checks["signature"], (target, checks)


@pytest.mark.anyio
async def test_a_snapshot_carries_tombstones_and_names_their_kind(tmp_path: Path) -> None:
    from node.manifest import read_manifest

    node = Rig(tmp_path).make_node()
    await node.start()
    try:
        fact = make_fact("Revoked before the snapshot.", None, ALICE.address)
        kept = make_fact("Kept in the snapshot.", None, ALICE.address)
        tomb = make_tombstone(fact.cid, ALICE.address)
        await node.contribute_many(
            [SignedRecord(f, ALICE.sign_cid(f.cid)) for f in (fact, kept)]
            + [SignedRecord(tomb, ALICE.sign_cid(tomb.cid))]
        )
        root, count = await node.snapshot()
        leaf = read_manifest(root.data)
        listed = {cid_string(link): leaf.kind_of(i) for i, link in enumerate(leaf.facts)}
        assert count == 2 and listed == {kept.cid: "fact", tomb.cid: "tombstone"}
    finally:
        await node.close()


@pytest.mark.anyio
async def test_the_mcp_backend_revokes_with_the_contributors_signature(tmp_path: Path) -> None:
    from api.mcp_server import LocalBackend

    node = Rig(tmp_path).make_node()
    await node.start()
    try:
        fact = make_fact("Revoked by an agent holding Alice's signature.", None, ALICE.address)
        await node.contribute(SignedRecord(fact, ALICE.sign_cid(fact.cid)))
        tomb = make_tombstone(fact.cid, ALICE.address)
        backend = LocalBackend(lambda: node)
        with pytest.raises(NotContributor):
            forged = make_tombstone(fact.cid, MALLORY.address)
            await backend.revoke(
                fact.cid, contributor=MALLORY.address, signature=MALLORY.sign_cid(forged.cid)
            )
        done = await backend.revoke(
            fact.cid, contributor=ALICE.address, signature=ALICE.sign_cid(tomb.cid)
        )
        assert (done.tombstone, done.revokes, done.status) == (tomb.cid, fact.cid, "created")
        with pytest.raises(Revoked):
            await node.get_fact(fact.cid)
    finally:
        await node.close()


def test_an_erased_newest_fact_s_row_id_is_never_given_again(tmp_path: Path) -> None:
    # SQLite gives max(id) + 1: erasing the newest fact handed its id to the next one, whose
    # search-cache entries (reconciled by id) could then keep the erased fact's vector
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    zero = np.zeros(8, dtype=np.float32)
    facts = [make_fact(f"fact {n}", {}, ALICE.address) for n in range(3)]
    ids = [row for row, _ in catalog.insert([NewFact(f, zero) for f in facts])]
    assert catalog.erase_fact(facts[-1].cid) == ids[-1]
    [(new_id, fresh)] = catalog.insert([NewFact(make_fact("after", {}, ALICE.address), zero)])
    assert fresh and new_id == ids[-1] + 1
    catalog.close()
    reopened = SqliteCatalog(tmp_path / "c.sqlite3")  # the erased id is remembered on disk
    assert reopened.erase_fact(make_fact("after", {}, ALICE.address).cid) == new_id
    [(again, _)] = reopened.insert([NewFact(make_fact("later", {}, ALICE.address), zero)])
    assert again == new_id + 1
    reopened.close()
