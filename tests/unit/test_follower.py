"""ChainFollower on the in-memory ledger: complete batches, fetch what is missing from peers,
ignore batches whose manifest does not match the anchored root, retry what no peer has."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from multiformats import CID

from index.sqlite_catalog import SqliteCatalog
from node.content import BlockService
from node.facts import Fact, make_fact
from node.follower import ChainFollower
from node.manifest import build_manifest
from node.memory import MemoryContentStore, MemoryLedger
from node.merkle import build_tree, verify_proof
from node.ports import AnchorEvent, NetworkStatus, NewFact, PeerStatus
from node.records import SignedRecord
from node.signing import SigningKey

pytestmark = pytest.mark.anyio
KEY = SigningKey.generate()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class PeerNetwork:
    """A stand-in for the network: one peer holding ``facts`` and ``blocks``."""

    def __init__(self) -> None:
        self.facts: dict[str, tuple[Fact, str]] = {}
        self.blocks: dict[str, bytes] = {}
        self.asked: list[str] = []

    async def fetch_blocks(self, cids: Sequence[str]) -> dict[str, bytes]:
        return {c: self.blocks[c] for c in cids if c in self.blocks}

    async def fetch_records(self, cids: Sequence[str]) -> list[SignedRecord]:
        self.asked.extend(cids)
        return [SignedRecord(*self.facts[c]) for c in cids if c in self.facts]

    async def start(self, sink: object) -> None: ...
    def publish(self, records: Sequence[SignedRecord]) -> None: ...
    def announce_anchor(self, chain_id: int, registry: str, event: AnchorEvent) -> None: ...
    def peers(self) -> list[PeerStatus]:
        return []

    def status(self) -> NetworkStatus:
        raise NotImplementedError

    async def connect(self, address: str) -> str:
        return ""

    async def disconnect(self, peer_id: str, block_seconds: float) -> None: ...
    async def close(self) -> None: ...


def anchor(
    ledger: MemoryLedger,
    peer: PeerNetwork,
    facts: list[Fact],
    lie: bool = False,
    named: bool = False,
) -> None:
    """Anchor ``facts``; ``named``: the manifest names their collections (as a node builds it
    since manifests carry them), else it names none (as one built before)."""
    listed = facts[:-1] if lie else facts  # a lying manifest omits a fact the root commits to
    names = {f.cid: f.collection for f in listed} if named else None
    manifest, blocks = build_manifest([f.cid for f in listed], None, names)
    for block in blocks:
        peer.blocks[str(block.cid)] = block.data
    root = build_tree([bytes(CID.decode(f.cid)) for f in facts]).root
    tx = ledger.sign_anchor(root, str(manifest.cid), len(facts), ledger.next_nonce())
    ledger.broadcast(tx.raw)


def rig(tmp_path: Path) -> tuple[ChainFollower, SqliteCatalog, MemoryLedger, PeerNetwork]:
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    ledger = MemoryLedger()
    peer = PeerNetwork()

    async def store(facts: Sequence[SignedRecord]) -> int:
        bodies = [f.body for f in facts if isinstance(f.body, Fact)]
        catalog.insert(
            [
                NewFact(b, np.zeros(4, np.float32), f.signature)
                for b, f in zip(bodies, facts, strict=True)
            ]
        )
        return len(facts)

    blocks = BlockService(MemoryContentStore(), catalog)
    return ChainFollower(catalog, ledger, peer, blocks, store), catalog, ledger, peer


def signed_facts(n: int, tag: str) -> list[Fact]:
    return [make_fact(f"{tag} {i}", None, KEY.address) for i in range(n)]


async def test_missing_facts_of_anchored_batches_are_fetched(tmp_path: Path) -> None:
    follower, catalog, ledger, peer = rig(tmp_path)
    facts = signed_facts(10, "anchored")
    for f in facts:
        peer.facts[f.cid] = (f, KEY.sign_cid(f.cid))
    anchor(ledger, peer, facts[:6])
    anchor(ledger, peer, facts[6:])
    await follower.step()
    assert follower.verified_batches == 2 and follower.facts_fetched == 10
    assert set(catalog.existing([f.cid for f in facts])) == {f.cid for f in facts}
    assert follower.follow_block == ledger.head()
    for f in facts:  # the facts adopted the on-chain batches as their provenance
        prov = catalog.provenance(f.cid)
        assert prov is not None and prov.batch is not None and prov.status == "anchored"
        assert verify_proof(bytes(CID.decode(f.cid)), prov.proof, prov.batch.root)
        assert ledger.verify_fact(bytes(CID.decode(f.cid)), prov.proof, prov.batch.root)
    assert catalog.anchor_backlog()[0] == 0


async def test_manifest_that_does_not_match_the_root_is_ignored(tmp_path: Path) -> None:
    follower, catalog, ledger, peer = rig(tmp_path)
    facts = signed_facts(4, "lying")
    for f in facts:
        peer.facts[f.cid] = (f, KEY.sign_cid(f.cid))
    anchor(ledger, peer, facts, lie=True)
    await follower.step()
    assert follower.invalid_batches == 1 and follower.verified_batches == 0
    assert catalog.count() == 0


async def test_batch_no_peer_can_complete_is_retried(tmp_path: Path) -> None:
    follower, catalog, ledger, peer = rig(tmp_path)
    facts = signed_facts(5, "scarce")
    anchor(ledger, peer, facts)
    for f in facts[:3]:
        peer.facts[f.cid] = (f, KEY.sign_cid(f.cid))
    await follower.step()
    assert follower.verified_batches == 0 and catalog.count() == 3
    assert follower.follow_block < ledger.head()
    for f in facts[3:]:
        peer.facts[f.cid] = (f, KEY.sign_cid(f.cid))
    await follower.step()
    assert follower.verified_batches == 1 and catalog.count() == 5


async def test_a_batch_with_facts_of_collections_not_held_completes(tmp_path: Path) -> None:
    """A node holding some collections adopts a batch that also anchors facts of others: it
    fetches them once to learn their collection, drops them, and moves on."""
    follower, catalog, ledger, peer = rig(tmp_path)
    mine = [make_fact(f"held {i}", None, KEY.address, collection="a") for i in range(3)]
    theirs = [make_fact(f"elsewhere {i}", None, KEY.address, collection="b") for i in range(3)]
    for f in mine + theirs:
        peer.facts[f.cid] = (f, KEY.sign_cid(f.cid))
    anchor(ledger, peer, mine + theirs)
    stored: list[str] = []

    async def store_held(records: Sequence[SignedRecord]) -> int:
        held = [r for r in records if isinstance(r.body, Fact) and r.body.collection == "a"]
        catalog.insert([NewFact(r.body, np.zeros(4, np.float32), r.signature) for r in held])  # type: ignore[arg-type]
        stored.extend(r.cid for r in held)
        return len(held)

    follower._store = store_held
    follower._not_held = lambda records: {  # as node.ingest answers for a node holding "a"
        r.cid for r in records if isinstance(r.body, Fact) and r.body.collection != "a"
    }
    await follower.step()
    assert follower.verified_batches == 1 and follower.follow_block == ledger.head()
    assert sorted(stored) == sorted(f.cid for f in mine)
    assert catalog.count() == 3


async def test_a_manifest_naming_collections_spares_fetching_the_others(tmp_path: Path) -> None:
    """With the manifest naming each fact's collection, a node holding ``a`` fetches only the
    facts of ``a``: chain rebuild per collection."""
    follower, catalog, ledger, peer = rig(tmp_path)
    follower._holds = lambda name: name == "a"
    mine = [make_fact(f"held {i}", None, KEY.address, collection="a") for i in range(3)]
    theirs = [make_fact(f"elsewhere {i}", None, KEY.address, collection="b") for i in range(3)]
    for f in mine + theirs:
        peer.facts[f.cid] = (f, KEY.sign_cid(f.cid))
    anchor(ledger, peer, mine + theirs, named=True)
    await follower.step()
    assert follower.verified_batches == 1 and follower.follow_block == ledger.head()
    assert sorted(peer.asked) == sorted(f.cid for f in mine)
    assert catalog.count() == 3
