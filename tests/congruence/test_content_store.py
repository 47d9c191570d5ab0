"""The same assertions against the in-memory fake, the embedded blockstore and the Kubo RPC
adapter talking to a real IPFS daemon (js-ipfs; see README for how it differs from Kubo)."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from multiformats import CID

from index.blockstore import CorruptBlock, SqliteBlockstore, migrate_filesystem_blocks
from index.kubo import KuboContentStore, api_base_url
from node.car import read_car, write_car
from node.errors import InvalidInput, NotFound, Unavailable
from node.facts import make_fact
from node.manifest import build_manifest
from node.memory import MemoryContentStore
from node.ports import ContentStore
from tests.helpers import JsIpfsDaemon, free_port


@pytest.fixture(scope="module")
def jsipfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsIpfsDaemon]:
    daemon = JsIpfsDaemon(tmp_path_factory.mktemp("ipfs") / "repo").start()
    yield daemon
    daemon.stop()


@pytest.fixture(params=["memory", "embedded", "kubo-rpc"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], ContentStore]:
    if request.param == "memory":
        return MemoryContentStore
    if request.param == "embedded":
        return lambda: SqliteBlockstore(tmp_path / "blocks.sqlite")
    daemon: JsIpfsDaemon = request.getfixturevalue("jsipfs")
    return lambda: KuboContentStore(daemon.api, read_timeout=1)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_put_get_has_pin(make_store: Callable[[], ContentStore]) -> None:
    fact = make_fact("Blocks round-trip through every content store.", {"k": "v"})
    root, manifests = build_manifest([fact.cid])

    async def scenario() -> None:
        store = make_store()
        try:
            assert not await store.has(fact.cid)
            await store.put(fact.cid, fact.block)
            await store.put(fact.cid, fact.block)  # idempotent
            assert await store.has(fact.cid)
            assert await store.get(fact.cid) == fact.block
            # any multibase spelling names the same block
            b58 = str(CID.decode(fact.cid).set(base="base58btc"))
            assert await store.get(b58) == fact.block
            await store.pin(fact.cid)
            for block in manifests:
                await store.put(str(block.cid), block.data)
            await store.pin(str(root.cid))
            assert await store.get(str(root.cid)) == root.data
        finally:
            await store.close()

    run(scenario())


def test_delete_unpins_and_removes_a_block(make_store: Callable[[], ContentStore]) -> None:
    fact = make_fact("A block that is revoked and must leave the store.")
    kept = make_fact("A block that stays.")

    async def scenario() -> None:
        store = make_store()
        try:
            for f in (fact, kept):
                await store.put(f.cid, f.block)
                await store.pin(f.cid)
            await store.delete(fact.cid)
            assert not await store.has(fact.cid)
            with pytest.raises(NotFound):
                await store.get(fact.cid)
            await store.delete(fact.cid)  # absent: not an error
            assert await store.get(kept.cid) == kept.block
        finally:
            await store.close()

    run(scenario())


def test_missing_and_mismatched_blocks(make_store: Callable[[], ContentStore]) -> None:
    fact = make_fact("a block the store never saw")
    other = make_fact("another block")

    async def scenario() -> None:
        store = make_store()
        try:
            with pytest.raises(NotFound):
                await store.get(fact.cid)
            with pytest.raises(InvalidInput):
                await store.put(fact.cid, other.block)
            assert not await store.has(fact.cid)
        finally:
            await store.close()

    run(scenario())


def test_put_many_stores_a_batch_or_nothing(make_store: Callable[[], ContentStore]) -> None:
    facts = [make_fact(f"batched block number {i}") for i in range(5)]
    intruder = make_fact("a block under someone else's CID")

    async def scenario() -> None:
        store = make_store()
        try:
            bad = [(f.cid, f.block) for f in facts[:2]] + [(facts[2].cid, intruder.block)]
            with pytest.raises(InvalidInput):
                await store.put_many(bad)
            for f in facts:
                assert not await store.has(f.cid)
            await store.put_many([(f.cid, f.block) for f in facts])
            await store.put_many([(f.cid, f.block) for f in facts[:2]])  # idempotent
            await store.put_many([])
            for f in facts:
                assert await store.get(f.cid) == f.block
            await store.delete(facts[0].cid)
            assert not await store.has(facts[0].cid)
            assert await store.get(facts[1].cid) == facts[1].block
        finally:
            await store.close()

    run(scenario())


def test_embedded_store_detects_corruption(tmp_path: Path) -> None:
    store = SqliteBlockstore(tmp_path / "blocks.sqlite")
    fact = make_fact("bytes on disk can rot")
    run(store.put(fact.cid, fact.block))
    run(store.close())
    with sqlite3.connect(tmp_path / "blocks.sqlite") as conn:
        conn.execute("UPDATE blocks SET data = ?", (fact.block[:-1] + b"\x00",))
    store = SqliteBlockstore(tmp_path / "blocks.sqlite")
    with pytest.raises(CorruptBlock):
        run(store.get(fact.cid))
    run(store.close())


def test_embedded_store_keeps_no_file_per_block_and_erases_deleted_bytes(tmp_path: Path) -> None:
    store = SqliteBlockstore(tmp_path / "blocks.sqlite")
    facts = [make_fact(f"one row per block, not one file: {i}") for i in range(200)]
    secret = make_fact("a revoked fact whose bytes must not linger")

    async def scenario() -> None:
        for fact in [*facts, secret]:
            await store.put(fact.cid, fact.block)
        await store.delete(secret.cid)
        assert not await store.has(secret.cid)

    run(scenario())
    run(store.close())
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["blocks.sqlite"], files  # the WAL is checkpointed and gone at close
    assert b"must not linger" not in (tmp_path / "blocks.sqlite").read_bytes()


def test_old_block_tree_is_moved_into_the_store_once(tmp_path: Path) -> None:
    """A data directory of the one-file-per-block layout (blocks/<xy>/<cid>) is migrated:
    every valid block moves, a rotten file or a temporary one is left out."""
    facts = [make_fact(f"migrated fact {i}") for i in range(20)]
    tree = tmp_path / "blocks"
    for fact in facts:
        (tree / fact.cid[-3:-1]).mkdir(parents=True, exist_ok=True)
        (tree / fact.cid[-3:-1] / fact.cid).write_bytes(fact.block)
    rotten = make_fact("rotten on disk")
    (tree / "zz").mkdir()
    (tree / "zz" / rotten.cid).write_bytes(rotten.block[:-1] + b"\x01")
    (tree / "zz" / ".tmp-abc").write_bytes(b"half written")
    target = tmp_path / "blocks.sqlite"
    assert migrate_filesystem_blocks(tree, target) == 20
    assert not tree.exists() and not (tmp_path / "blocks.sqlite.migrating").exists()
    store = SqliteBlockstore(target)
    assert store.list_cids() == sorted(f.cid for f in facts)
    assert run(store.get(facts[3].cid)) == facts[3].block
    run(store.close())


def test_kubo_adapter_car_export_and_import(jsipfs: JsIpfsDaemon) -> None:
    facts = [make_fact(f"exported through dag/export {i}") for i in range(3)]
    root, manifests = build_manifest([f.cid for f in facts])

    async def scenario() -> None:
        store = KuboContentStore(jsipfs.api, read_timeout=1)
        try:
            for f in facts:
                await store.put(f.cid, f.block)
            for block in manifests:
                await store.put(str(block.cid), block.data)
            car = b"".join([chunk async for chunk in store.export_car(str(root.cid))])
            roots, blocks = read_car(io.BytesIO(car))
            assert roots == [root.cid]
            assert {str(c.set(base="base32")) for c, _ in blocks} == {
                *(f.cid for f in facts),
                str(root.cid),
            }
            # dag/import of a CAR written by the node pins its root in the daemon
            new = make_fact("imported through dag/import")
            imported = b"".join(
                write_car([CID.decode(new.cid)], [(CID.decode(new.cid), new.block)])
            )
            assert await store.import_car(imported) == [new.cid]
            assert await store.get(new.cid) == new.block
        finally:
            await store.close()

    run(scenario())
    pins = jsipfs.rpc("pin/ls", arg=str(root.cid)).json()["Keys"]
    # js-ipfs answers in base58btc where Kubo answers base32: compare parsed CIDs
    assert root.cid in {CID.decode(k) for k in pins}


def test_kubo_adapter_maps_a_dead_daemon_to_unavailable() -> None:
    store = KuboContentStore(f"/ip4/127.0.0.1/tcp/{free_port()}")
    fact = make_fact("nobody is listening")
    with pytest.raises(Unavailable):
        run(store.put(fact.cid, fact.block))
    with pytest.raises(Unavailable):
        run(store.get(fact.cid))


def test_api_address_forms() -> None:
    assert api_base_url("/ip4/127.0.0.1/tcp/5001") == "http://127.0.0.1:5001/api/v0"
    assert api_base_url("/dns4/kubo/tcp/5001/http") == "http://kubo:5001/api/v0"
    assert api_base_url("http://kubo:5001") == "http://kubo:5001/api/v0"
    assert api_base_url("http://kubo:5001/api/v0/") == "http://kubo:5001/api/v0"
    for bad in ["/ip4/127.0.0.1/udp/5001", "ftp://x", "kubo:5001"]:
        with pytest.raises(ValueError, match="unsupported"):
            api_base_url(bad)
    assert httpx  # the adapter's transport


@pytest.mark.parametrize("kind", ["memory", "embedded"])
def test_inventory_lists_exactly_the_stored_blocks(kind: str, tmp_path: Path) -> None:
    """The stores that can list their blocks (used to recover facts a damaged catalog lost)
    list the same CIDs for the same puts, in the canonical spelling."""
    from node.ports import BlockInventory

    facts = [make_fact(f"inventory fact {i}") for i in range(5)]
    store = MemoryContentStore() if kind == "memory" else SqliteBlockstore(tmp_path / "b.sqlite")
    assert isinstance(store, BlockInventory)

    async def scenario() -> None:
        assert store.list_cids() == []
        for fact in facts:
            b58 = str(CID.decode(fact.cid).set(base="base58btc"))
            await store.put(b58, fact.block)

    run(scenario())
    assert store.list_cids() == sorted(f.cid for f in facts)
