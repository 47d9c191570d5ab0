"""One origin per write path decides announcing and anchoring (``node.origin``), instead of
flags: the rules, and the service following them on the in-memory fakes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from index.sqlite_catalog import SqliteCatalog
from node.assembly import assemble
from node.facts import make_fact
from node.memory import HashEmbedder, MemoryContentStore, MemoryKeywordIndex, MemoryVectorIndex
from node.origin import Origin
from node.records import SignedRecord
from node.service import NodeOptions
from node.signing import SigningKey

KEY = SigningKey.generate()


def test_the_rules() -> None:
    assert {o for o in Origin if o.announced} == {Origin.LOCAL, Origin.CAR, Origin.RECOVERY}
    assert {o for o in Origin if o.anchored_here(False)} == {Origin.LOCAL, Origin.RECOVERY}
    assert all(o.anchored_here(True) for o in Origin)


class Published:
    """Records what the node asks the network to publish (nothing else is reached here)."""

    def __init__(self) -> None:
        self.cids: list[str] = []

    async def start(self, sink: object) -> None: ...

    async def close(self) -> None: ...

    def publish(self, records: Sequence[SignedRecord]) -> None:
        self.cids += [r.cid for r in records]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("anchor_peer_facts", [False, True])
async def test_the_service_announces_and_anchors_by_origin(
    tmp_path: Path, anchor_peer_facts: bool
) -> None:
    embedder = HashEmbedder()
    network = Published()
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    node = assemble(
        catalog,
        MemoryVectorIndex(embedder.dimension),
        embedder,
        MemoryContentStore(),
        NodeOptions(data_dir=tmp_path, anchor_peer_facts=anchor_peer_facts),
        operator=KEY,
        keywords=MemoryKeywordIndex(),
        network=network,  # type: ignore[arg-type]  # start, publish and close are reached
    )
    await node.start()
    try:
        cids = {}
        for origin in Origin:
            fact = make_fact(f"a fact that came by {origin}", contributor=KEY.address)
            cids[origin] = fact.cid
            await node.contribute_many([SignedRecord(fact, KEY.sign_cid(fact.cid))], origin=origin)
        assert set(network.cids) == {cids[o] for o in Origin if o.announced}
        queued = {cid for cid, _, _ in catalog.queued_for_anchor(100)}
        assert queued == {cids[o] for o in Origin if o.anchored_here(anchor_peer_facts)}
    finally:
        await node.close()
