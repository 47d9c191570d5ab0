"""Partial replication between real nodes on the in-package network (``node.memory_network``):
a node holding only collection ``a`` gets the base set and ``a`` from a node holding
everything, by sync and by gossip, and is never offered a ``b`` fact (so it drops none:
``ingest.other_collections`` stays 0); both list each other in the peer directory, and so
does ``GET /v1/peers``. (``tests/congruence/test_network.py`` holds the libp2p host to the
same behaviour.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from api.routes.system import peers as peers_route
from index.sqlite_catalog import SqliteCatalog
from node.collections import RECORDS_SET, Collections
from node.facts import make_fact
from node.memory_network import MemoryHub, MemoryNetwork
from node.records import SignedRecord
from node.service import KnowledgeNode, NodeOptions
from node.signing import SigningKey
from node.tombstone import make_tombstone
from tests.memory_nodes import memory_node

OPERATOR = SigningKey.generate()
ALICE = SigningKey.generate()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def signed(text: str, collection: str = "default") -> SignedRecord:
    fact = make_fact(text, None, ALICE.address, collection=collection)
    return SignedRecord(fact, ALICE.sign_cid(fact.cid))


async def wait_for(check: Callable[[], bool], what: str) -> None:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < 60, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def holds(node: KnowledgeNode, record: SignedRecord) -> bool:
    return record.cid in node._catalog.cids()


def test_the_catalog_reads_signed_cids_per_set(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    node = memory_node(tmp_path, OPERATOR, catalog=catalog)

    async def main() -> None:
        await node.start()
        try:
            base, in_a = signed("Base fact."), signed("Fact of a.", "a")
            await node.contribute_many([base, in_a, signed("Fact of b.", "b")])
            tombstone = make_tombstone(base.cid, ALICE.address)
            await node.contribute_many([SignedRecord(tombstone, ALICE.sign_cid(tombstone.cid))])
            assert catalog.signed_cids("a") == [in_a.cid]
            assert catalog.signed_cids("default") == []  # its only fact is revoked: erased
            assert catalog.signed_cids(RECORDS_SET) == [tombstone.cid]
            assert len(catalog.signed_cids()) == 3
            assert catalog.signed_cids("nothing-here") == []
        finally:
            await node.close()

    asyncio.run(main())


@pytest.mark.anyio
async def test_a_node_holding_one_collection_replicates_only_it(tmp_path: Path) -> None:
    hub = MemoryHub()
    full_net, part_net = MemoryNetwork(hub), MemoryNetwork(hub)
    full = memory_node(tmp_path / "full", OPERATOR, network=full_net)
    part = memory_node(
        tmp_path / "part",
        OPERATOR,
        network=part_net,
        options=NodeOptions(data_dir=tmp_path / "part", collections=Collections.of(["a"])),
    )
    offered: list[SignedRecord] = []
    receive = part._receive

    async def counting(records: list[SignedRecord], origin: object) -> int:
        offered.extend(records)
        return await receive(records, origin)  # type: ignore[arg-type]

    part._receive = counting  # type: ignore[method-assign,assignment]
    await full.start()
    await part.start()
    try:
        base, before, not_held = signed("Base."), signed("A, before.", "a"), signed("B.", "b")
        await full.contribute_many([base, before, not_held])
        await part_net.connect(full_net.address)  # catch-up on connect: the held sets only
        await wait_for(lambda: holds(part, before), "catch-up")
        gossip_a, gossip_b = signed("A, by gossip.", "a"), signed("B, by gossip.", "b")
        await full.contribute_many([gossip_b, gossip_a])
        await wait_for(lambda: holds(part, gossip_a), "gossip of a")
        # never offered (so never fetched, nor dropped) a fact of a collection it does not hold
        assert {r.cid for r in offered} == {before.cid, gossip_a.cid}
        status = await part.status()
        assert status.ingest.other_collections == 0
        assert status.collections is not None and status.collections.facts == {"a": 2}

        await wait_for(lambda: _facts(part, full_net.peer_id) == 5, "the full node's advert")
        (entry,) = part.directory()
        assert entry.holds_all and entry.connected and entry.model_cid == full.model_cid
        assert {n: c.facts for n, c in entry.collections.items()} == {
            "default": 1,
            "a": 2,
            "b": 2,
        }
        await wait_for(lambda: _facts(full, part_net.peer_id) == 2, "the partial node's advert")
        (seen,) = full.directory()
        assert not seen.holds_all and set(seen.collections) == {"a"}
        assert seen.collections["a"].digest == entry.collections["a"].digest  # equal sets

        listed = (await peers_route(part)).model_dump()["directory"]  # GET /v1/peers
        assert [e["peer_id"] for e in listed] == [full_net.peer_id]
        assert listed[0]["collections"]["b"]["facts"] == 2 and listed[0]["holds_all"]
    finally:
        await part.close()
        await full.close()


def _facts(node: KnowledgeNode, peer: str) -> int:
    return sum(
        c.facts for e in node.directory() if e.peer_id == peer for c in e.collections.values()
    )
