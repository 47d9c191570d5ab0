"""The anchoring queue on a real SQLite catalog and the in-memory ledger: batching, proofs,
restarts between send and receipt, chain outages, nonce conflicts, lost chain state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from multiformats import CID

from index.sqlite_catalog import SqliteCatalog
from node.anchoring import Anchorer, AnchorOptions
from node.cid import cid_string
from node.content import BlockService
from node.errors import ChainError
from node.facts import make_fact
from node.manifest import read_manifest
from node.memory import MemoryContentStore, MemoryLedger
from node.merkle import verify_proof
from node.ports import NewFact
from node.provenance import BatchStatus, check_bundle

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Rig:
    def __init__(self, tmp_path: Path, **options: float) -> None:
        self.path = tmp_path / "catalog.sqlite3"
        self.catalog = SqliteCatalog(self.path)
        self.store = MemoryContentStore()
        self.ledger = MemoryLedger()
        self.options = AnchorOptions(**{"batch_size": 4, "batch_age": 3600.0, **options})  # type: ignore[arg-type]
        self.anchorer = self.restart()

    def restart(self) -> Anchorer:
        """A fresh anchorer on the same catalog and chain: what a node restart sees."""
        self.anchorer = Anchorer(
            self.catalog, self.ledger, BlockService(self.store, self.catalog), self.options
        )
        return self.anchorer

    def add(self, n: int, start: int = 0) -> list[str]:
        facts = [make_fact(f"fact number {i}") for i in range(start, start + n)]
        self.catalog.insert([NewFact(f, np.zeros(4, dtype=np.float32)) for f in facts])
        return [f.cid for f in facts]

    def status_of(self) -> list[BatchStatus]:
        return [b.status for b in self.catalog.batches(list(BatchStatus))]


async def test_batches_close_by_size_and_every_fact_gets_a_proof(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    cids = rig.add(10)
    assert await rig.anchorer.step() is True  # two full batches sent
    assert await rig.anchorer.step() is False
    assert rig.catalog.anchor_backlog()[0] == 2  # the rest waits for size or age
    assert rig.status_of() == [BatchStatus.ANCHORED] * 2
    await rig.anchorer.step(flush=True)
    await rig.anchorer.step()
    assert rig.status_of() == [BatchStatus.ANCHORED] * 3
    assert len(rig.ledger.events) == 3
    for cid in cids:
        prov = rig.catalog.provenance(cid)
        assert prov is not None and prov.batch is not None
        assert verify_proof(bytes(CID.decode(cid)), prov.proof, prov.batch.root)
        assert rig.ledger.verify_fact(bytes(CID.decode(cid)), prov.proof, prov.batch.root)
        assert prov.batch.tx_hash is not None and prov.batch.block_number is not None
        # the manifest on chain names the batch's facts and is in the content store
        assert await rig.store.has(prov.batch.manifest_cid)
    assert prov is not None and prov.batch is not None
    tampered = list(prov.proof)
    tampered[0] = bytes(32)
    assert not rig.ledger.verify_fact(bytes(CID.decode(cid)), tampered, prov.batch.root)


async def test_a_batch_manifest_names_the_collections_of_its_facts(tmp_path: Path) -> None:
    """What a partial node's follower reads to fetch only what it holds (node.manifest)."""
    rig = Rig(tmp_path)
    facts = [
        make_fact("in default"),
        make_fact("in law", collection="law"),
        make_fact("in medicine", collection="medicine"),
    ]
    rig.catalog.insert([NewFact(f, np.zeros(4, dtype=np.float32)) for f in facts])
    assert {c for _, _, c in rig.catalog.queued_for_anchor(10)} == {"default", "law", "medicine"}
    await rig.anchorer.step(flush=True)
    [batch] = rig.catalog.batches(list(BatchStatus))
    leaf = read_manifest(await rig.store.get(batch.manifest_cid))
    named = dict(zip((cid_string(c) for c in leaf.facts), leaf.collections or [], strict=True))
    assert named == {f.cid: f.collection for f in facts}
    # a batch of default facts only names none (its manifest is what it always was)
    only_default = rig.add(4, start=100)
    await rig.anchorer.step(flush=True)
    newest = max(rig.catalog.batches(list(BatchStatus)), key=lambda b: b.id)
    assert read_manifest(await rig.store.get(newest.manifest_cid)).collections is None
    assert newest.count == len(only_default)


async def test_batches_close_by_age(tmp_path: Path) -> None:
    rig = Rig(tmp_path, batch_age=0.0)
    rig.add(1)
    await rig.anchorer.step()
    await rig.anchorer.step()
    assert rig.status_of() == [BatchStatus.ANCHORED]


async def test_restart_between_send_and_receipt_does_not_anchor_twice(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.add(4)
    rig.ledger.automine = False
    await rig.anchorer.step()
    assert rig.status_of() == [BatchStatus.SENT] and len(rig.ledger.pending) == 1
    rig.ledger.mine()  # mined while the node is down
    rig.restart()
    await rig.anchorer.step()
    assert rig.status_of() == [BatchStatus.ANCHORED]
    assert len(rig.ledger.events) == 1 and rig.ledger.nonce == 1
    assert not rig.ledger.pending


async def test_restart_after_the_transaction_was_lost_resends_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.add(4)
    rig.ledger.automine = False
    await rig.anchorer.step()
    (sent,) = rig.catalog.batches([BatchStatus.SENT])
    rig.ledger.drop_pending()  # e.g. the node died before the RPC received it
    rig.restart()
    rig.ledger.automine = True
    await rig.anchorer.step()  # rebroadcasts the stored bytes (same nonce, same hash)
    await rig.anchorer.step()
    (done,) = rig.catalog.batches([BatchStatus.ANCHORED])
    assert done.tx_hash == sent.tx_hash and done.nonce == sent.nonce == 0
    assert len(rig.ledger.events) == 1


async def test_chain_down_then_back_anchors_everything(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.ledger.down = True
    cids = rig.add(9)
    with pytest.raises(ChainError):
        await rig.anchorer.step()
    assert rig.catalog.anchor_backlog()[0] == 1  # sealing does not need the chain
    rig.ledger.down = False
    rig.restart()
    while await rig.anchorer.step(flush=True):
        pass
    assert rig.status_of() == [BatchStatus.ANCHORED] * 3
    assert sum(b.count for b in rig.catalog.batches([BatchStatus.ANCHORED])) == len(cids)


async def test_root_anchored_by_someone_else_is_recorded_without_a_transaction(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.add(4)
    await rig.anchorer._seal_due(flush=False)
    (batch,) = rig.catalog.batches([BatchStatus.SEALED])
    other = rig.ledger.sign_anchor(batch.root, batch.manifest_cid, batch.count, 0)
    rig.ledger.broadcast(other.raw)
    await rig.anchorer.step()
    (done,) = rig.catalog.batches([BatchStatus.ANCHORED])
    assert done.tx_hash == other.tx_hash and rig.ledger.nonce == 1


async def test_nonce_taken_by_another_transaction_is_resent_with_a_fresh_one(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.add(4)
    rig.ledger.automine = False
    await rig.anchorer.step()
    rig.ledger.drop_pending()
    # the operator's account spends nonce 0 elsewhere while our transaction is lost
    rig.ledger.nonce = 1
    rig.restart()
    rig.ledger.automine = True
    await rig.anchorer.step()  # rebroadcast -> nonce too low -> back to sealed
    await rig.anchorer.step()
    await rig.anchorer.step()
    (done,) = rig.catalog.batches([BatchStatus.ANCHORED])
    assert done.nonce == 1 and len(rig.ledger.events) == 1


async def test_unmined_transaction_is_replaced_with_higher_fees(tmp_path: Path) -> None:
    rig = Rig(tmp_path, resend_after=0.0)
    rig.add(4)
    rig.ledger.automine = False
    await rig.anchorer.step()
    (first,) = rig.catalog.batches([BatchStatus.SENT])
    await rig.anchorer.step()
    (second,) = rig.catalog.batches([BatchStatus.SENT])
    assert second.tx_hash != first.tx_hash and second.nonce == first.nonce
    rig.ledger.mine()  # only one of the two can be mined: same nonce
    await rig.anchorer.step()
    assert rig.status_of() == [BatchStatus.ANCHORED] and len(rig.ledger.events) == 1


async def test_a_chain_that_lost_its_state_gets_the_roots_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.add(8)
    await rig.anchorer.step()
    assert len(rig.ledger.events) == 2
    rig.ledger = MemoryLedger()  # e.g. a dev chain restarted without its state file
    rig.restart()
    await rig.anchorer.step()
    await rig.anchorer.step()
    assert rig.status_of() == [BatchStatus.ANCHORED] * 2
    assert len(rig.ledger.events) == 2


async def test_queue_survives_reopening_the_catalog(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.add(3)
    rig.catalog.close()
    again = SqliteCatalog(rig.path)
    assert again.anchor_backlog()[0] == 3


async def test_bundle_checks(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    (cid, *_) = rig.add(4)
    await rig.anchorer.step()
    await rig.anchorer.step()
    prov = rig.catalog.provenance(cid)
    assert prov is not None and prov.batch is not None and prov.status == "anchored"
    bundle = {
        "cid": cid,
        "record": prov.record,
        "contributor": None,
        "signature": None,
        "status": "anchored",
        "root": "0x" + prov.batch.root.hex(),
        "proof": ["0x" + p.hex() for p in prov.proof],
        "manifest_cid": prov.batch.manifest_cid,
        "chain_id": 31337,
        "block_number": prov.batch.block_number,
    }
    checks = {c.name: c.ok for c in check_bundle(bundle, rig.ledger)}
    assert checks == {
        "cid": True,
        "contributor": True,
        "signature": False,  # these facts were stored unsigned
        "proof": True,
        "chain_id": True,
        "anchored": True,
        "manifest": True,
        "block": True,
        "verifyFact": True,
    }
    tampered = {**bundle, "record": {**prov.record, "text": "fact number 999"}}
    assert not {c.name: c.ok for c in check_bundle(tampered, rig.ledger)}["cid"]


def test_schema_1_catalog_is_migrated_and_queued(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    fact = make_fact("A fact stored by an older node.")
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE facts (id INTEGER PRIMARY KEY, cid TEXT NOT NULL UNIQUE, text TEXT NOT NULL,
            metadata TEXT NOT NULL, contributor TEXT, block BLOB NOT NULL, vector BLOB NOT NULL,
            stored_at REAL NOT NULL);
        INSERT INTO settings VALUES ('schema_version', '1'), ('publish_queue_seeded', '1');
        """
    )
    db.execute(
        "INSERT INTO facts (cid, text, metadata, contributor, block, vector, stored_at) "
        "VALUES (?, ?, '{}', NULL, ?, ?, 1.0)",
        (fact.cid, fact.text, fact.block, np.zeros(4, dtype=np.float32).tobytes()),
    )
    db.commit()
    db.close()
    catalog = SqliteCatalog(path)
    assert catalog.get_setting("schema_version") == "3"
    assert catalog.anchor_backlog() == (1, 1.0)
    stored = catalog.get(fact.cid)
    assert stored is not None and stored.signature is None
    prov = catalog.provenance(fact.cid)
    assert prov is not None and prov.status == "pending"


def test_chain_rpc_without_registry_is_refused(tmp_path: Path) -> None:
    from node.bootstrap import build_ledger
    from node.settings import Settings
    from node.signing import SigningKey

    settings = Settings(data_dir=tmp_path, chain_rpc="http://127.0.0.1:1")
    with pytest.raises(ChainError, match="KNOWHUB_REGISTRY_ADDRESS"):
        build_ledger(settings, SigningKey.generate(), tmp_path)
