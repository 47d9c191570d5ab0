"""CAR imports on KnowledgeNode (fakes and a real SQLite catalog): a CAR brings in facts only
with their contributors' valid signatures, keeps those signatures, and never makes the
importing node anchor someone else's facts (unless it anchors peers' facts)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from index.sqlite_catalog import SqliteCatalog
from node.assembly import assemble
from node.car import InvalidCar, write_car
from node.content import clear_spool_dir, spool_dir, spool_file
from node.facts import Fact, make_fact
from node.memory import HashEmbedder, MemoryContentStore, MemoryKeywordIndex, MemoryVectorIndex
from node.records import SignedRecord
from node.service import KnowledgeNode, NodeOptions
from node.signing import SigningKey, signature_valid
from tests.unit.test_car_manifest import crafted_car, crafted_leaf, signed_fact

pytestmark = pytest.mark.anyio

ALICE = SigningKey(bytes.fromhex("33" * 32))
OPERATOR = SigningKey(bytes.fromhex("44" * 32))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def build(path: Path, *, require: bool = False, anchor_peers: bool = False) -> KnowledgeNode:
    path.mkdir(parents=True, exist_ok=True)
    return assemble(
        SqliteCatalog(path / "catalog.sqlite3"),
        MemoryVectorIndex(384),
        HashEmbedder(),
        MemoryContentStore(),
        NodeOptions(data_dir=path, require_signatures=require, anchor_peer_facts=anchor_peers),
        operator=OPERATOR,
        keywords=MemoryKeywordIndex(),
    )


async def export(node: KnowledgeNode) -> bytes:
    """What ``knowhub export`` downloads: the gateway's CAR of the snapshot root."""
    root, _ = await node.snapshot()
    blocks = [(cid, data) async for cid, data in node.walk(str(root.cid))]
    return b"".join(write_car([root.cid], blocks))


@pytest.mark.parametrize("require", [False, True])
async def test_a_car_naming_a_contributor_without_her_signature_stores_nothing(
    tmp_path: Path, require: bool
) -> None:
    node = build(tmp_path / "n", require=require)
    await node.start()
    try:
        fact = make_fact("Alice never said this.", None, ALICE.address)
        car = crafted_car(tmp_path, crafted_leaf([fact], None), [fact])
        with pytest.raises(InvalidCar, match="without their signatures"):
            await node.import_car(car)
        mallory = SigningKey(bytes.fromhex("55" * 32))
        forged = bytes.fromhex(mallory.sign_cid(fact.cid)[2:])
        car = crafted_car(tmp_path, crafted_leaf([fact], [forged]), [fact])
        with pytest.raises(InvalidCar, match=f"fact {fact.cid}"):
            await node.import_car(car)
        assert (await node.status()).facts == 0
    finally:
        await node.close()


@pytest.mark.parametrize("anchor_peers", [False, True])
async def test_export_import_keeps_signatures_and_does_not_anchor_others_facts(
    tmp_path: Path, anchor_peers: bool
) -> None:
    a = build(tmp_path / "a")
    b = build(tmp_path / "b", require=True, anchor_peers=anchor_peers)
    await a.start()
    await b.start()
    try:
        alice = [signed_fact(ALICE, f"Alice's fact {i}") for i in range(3)]
        for fact, sig in alice:
            await a.contribute(SignedRecord(fact, "0x" + sig.hex()))
        operator_signed = await a.contribute(a.accept({"text": "Signed by A's operator."}))
        legacy = make_fact("An unsigned fact from an old import.")
        await a.contribute(legacy)  # stored without a signature: cannot leave in a snapshot
        car = await export(a)
        result = await b.import_car(io.BytesIO(car))
        assert (result.facts, result.created, result.existing) == (4, 4, 0)
        for cid in [f.cid for f, _ in alice] + [operator_signed.cid]:
            on_a, on_b = await a.get_fact(cid), await b.get_fact(cid)
            assert on_b.signature == on_a.signature is not None
            assert signature_valid(cid, on_b.contributor, on_b.signature)
            assert (await b.provenance(cid)).signature_valid
        assert (await b.get_fact(operator_signed.cid)).contributor == OPERATOR.address
        assert not await _has(b, legacy)
        queued = b._catalog.anchor_backlog()[0]  # the catalog is the witness
        assert queued == (4 if anchor_peers else 0)
        # the same signed set gives the same snapshot root on both nodes
        again = await b.import_car(io.BytesIO(car))
        assert (again.created, again.existing) == (0, 4)
        root_a, _ = await a.snapshot()
        root_b, _ = await b.snapshot()
        assert root_a.cid == root_b.cid
    finally:
        await a.close()
        await b.close()


async def _has(node: KnowledgeNode, fact: Fact) -> bool:
    return bool(node._catalog.existing([fact.cid]))


def test_spool_files_are_private_and_cleared_at_start(tmp_path: Path) -> None:
    (tmp_path / "import-abc.car").write_bytes(b"left by an older version")
    spool_dir(tmp_path).mkdir()
    (spool_dir(tmp_path) / "stale").write_bytes(b"left by a crash")
    clear_spool_dir(tmp_path)
    assert list(tmp_path.iterdir()) == [spool_dir(tmp_path)]
    assert list(spool_dir(tmp_path).iterdir()) == []
    assert spool_dir(tmp_path).stat().st_mode & 0o777 == 0o700
    with spool_file(tmp_path) as fh:
        fh.write(b"x")
        assert list(spool_dir(tmp_path).iterdir()) == []  # unnamed: nothing to leak
