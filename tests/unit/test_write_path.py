"""The write path under failure and load: no false acknowledgement, queries before ingest,
bounded ingest, one node per data directory."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.sqlite_catalog import SqliteCatalog
from node.assembly import assemble
from node.datadir import DataDirInUse, DataDirLock
from node.embedding import EmbedScheduler, SchedulerOptions
from node.errors import KnowhubError, NotFound, Overloaded, StorageError
from node.facts import make_fact
from node.memory import HashEmbedder, MemoryContentStore, MemoryKeywordIndex, MemoryVectorIndex
from node.origin import Origin
from node.ports import NewFact, Preemptible
from node.results import Contribution
from node.retrieval import RetrievalOptions
from node.search import Query, SearchMode
from node.service import KnowledgeNode, NodeOptions
from node.signing import SigningKey

pytestmark = pytest.mark.anyio

OPERATOR = SigningKey.generate()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FailingCatalog(SqliteCatalog):
    """A catalog whose inserts fail (disk full, I/O error, SQLITE_BUSY) while ``failing``."""

    failing = True

    def insert(self, facts: Sequence[NewFact]) -> list[tuple[int, bool]]:
        if self.failing:
            time.sleep(0.05)  # let concurrent duplicates queue up behind this call
            raise StorageError("catalog error: database or disk is full")
        return super().insert(facts)


class GatedEmbedder(HashEmbedder):
    """Blocks in ``embed`` until released; records every pass."""

    def __init__(self) -> None:
        super().__init__()
        self.passes: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail_on: str | None = None

    def embed(self, texts: Sequence[str]) -> Any:
        self.passes.append(list(texts))
        self.started.set()
        self.gate.wait(timeout=60)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("model exploded")
        return super().embed(texts)


def build(
    tmp_path: Path, catalog: SqliteCatalog, embedder: HashEmbedder | None = None, **opts: Any
) -> KnowledgeNode:
    emb = embedder or HashEmbedder()
    return assemble(
        catalog,
        MemoryVectorIndex(emb.dimension),
        emb,
        MemoryContentStore(),
        NodeOptions(data_dir=tmp_path, retrieval=RetrievalOptions(candidate_pool=10), **opts),
        operator=OPERATOR,
        keywords=MemoryKeywordIndex(),
    )


async def test_concurrent_duplicates_are_never_acknowledged_when_storage_fails(
    tmp_path: Path,
) -> None:
    catalog = FailingCatalog(tmp_path / "catalog.sqlite3")
    node = build(tmp_path, catalog)
    await node.start()
    try:
        fact = make_fact("A fact submitted six times at once while the disk is full.")
        outcomes = await asyncio.gather(
            *(node.contribute(fact) for _ in range(6)), return_exceptions=True
        )
        # Not one "created" or "exists": every caller learns the write failed.
        assert all(isinstance(o, StorageError) for o in outcomes), outcomes
        batches = await asyncio.gather(
            *(node.contribute_many([fact]) for _ in range(4)), return_exceptions=True
        )
        for batch in batches:
            items = [batch] if isinstance(batch, BaseException) else batch
            assert not any(isinstance(i, Contribution) for i in items), batches
        assert (await node.status()).facts == 0
        reasons = (await node.status()).not_ready()
        assert reasons == ["writes are failing: catalog error: database or disk is full"]
        # storage comes back: the same fact is stored once, and then "exists"
        catalog.failing = False
        assert await node.contribute(fact) == Contribution(fact.cid, True)
        assert await node.contribute(fact) == Contribution(fact.cid, False)
        assert (await node.status()).not_ready() == []
    finally:
        await node.close()


async def test_embedder_failure_is_not_an_acknowledgement(tmp_path: Path) -> None:
    embedder = GatedEmbedder()
    embedder.fail_on = "poison text"
    node = build(tmp_path, SqliteCatalog(tmp_path / "catalog.sqlite3"), embedder)
    await node.start()
    try:
        fact = make_fact("poison text")
        outcomes = await asyncio.gather(
            *(node.contribute(fact) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(o, KnowhubError) for o in outcomes), outcomes
        assert (await node.status()).facts == 0
        # the node still works: other facts and queries go through
        assert (await node.contribute(make_fact("a healthy fact"))).created
        assert (await node.query(Query("healthy", mode=SearchMode.DENSE))).results
    finally:
        await node.close()


async def test_queries_overtake_queued_ingest() -> None:
    embedder = GatedEmbedder()
    scheduler = EmbedScheduler(embedder, SchedulerOptions(slice_seconds=0.001, max_slice=4))
    try:
        embedder.gate.clear()  # the worker is stuck in the first ingest slice
        scheduler.admit(40)
        ingest = asyncio.ensure_future(scheduler.embed_ingest([f"doc {i}" for i in range(40)]))
        assert await asyncio.to_thread(embedder.started.wait, 60)
        query = asyncio.ensure_future(scheduler.embed_query(["the query"]))
        await asyncio.sleep(0.05)
        embedder.gate.set()
        vector = await query
        assert vector.shape == (1, embedder.dimension)
        # the query ran right after the slice in progress, not after the whole batch
        order = [p for p in embedder.passes]
        assert order[1] == ["the query"], order[:3]
        assert len(order[0]) <= 4
        out = await ingest
        assert out.shape == (40, embedder.dimension)
        np.testing.assert_allclose(out, HashEmbedder().embed([f"doc {i}" for i in range(40)]))
        assert scheduler.stats().ingest_pending == 0
    finally:
        scheduler.close()


class LayeredEmbedder(HashEmbedder):
    """Each text is a 'layer' (HashEmbedder calls the yield point before it); records the
    order of events across the ingest and query instances."""

    def __init__(self, name: str, log: list[str], hold: threading.Event | None = None) -> None:
        super().__init__()
        self.name, self.log, self.hold = name, log, hold
        self.inside = threading.Event()

    def embed(self, texts: Sequence[str]) -> Any:
        self.log.append(f"{self.name} start")
        self.inside.set()
        if self.hold is not None:
            assert self.hold.wait(timeout=60)
        out = super().embed(texts)
        self.log.append(f"{self.name} end")
        return out


async def test_a_dedicated_query_model_does_not_wait_for_the_ingest_pass() -> None:
    events: list[str] = []
    hold = threading.Event()
    ingest_model = LayeredEmbedder("ingest", events)
    query_model = LayeredEmbedder("query", events, hold)
    texts = [f"doc {i}" for i in range(200)]
    paused = threading.Event()

    def record_pause() -> None:  # wraps the scheduler's yield point
        if scheduler._queries or scheduler._querying:
            paused.set()
        original()

    # one slice holds the whole batch: without preemption the query would wait for all of it
    scheduler = EmbedScheduler(
        ingest_model, SchedulerOptions(slice_seconds=60, max_slice=200), query_embedder=query_model
    )
    original = scheduler._yield_to_queries  # installed by the scheduler, wrapped below
    try:
        slow = threading.Event()

        def slow_layer() -> None:
            record_pause()
            slow.wait(0.01)  # each 'layer' takes a little while

        ingest_model.set_yield_point(slow_layer)
        scheduler.admit(len(texts))
        ingest = asyncio.ensure_future(scheduler.embed_ingest(texts))
        assert await asyncio.to_thread(ingest_model.inside.wait, 60)
        query = asyncio.ensure_future(scheduler.embed_query(["the query"]))
        assert await asyncio.to_thread(query_model.inside.wait, 60)
        # the query model is busy (held): the ingest pass must stop at its next layer
        assert await asyncio.to_thread(paused.wait, 60)
        assert not ingest.done()
        hold.set()
        vector = await query
        assert vector.shape == (1, query_model.dimension)
        assert not ingest.done(), "the query waited for the whole ingest pass"
        out = await ingest
        np.testing.assert_allclose(out, HashEmbedder().embed(texts))
        assert events.index("query end") < events.index("ingest end")
    finally:
        hold.set()
        scheduler.close()


class UnpausableEmbedder:
    """An ingest model that cannot pause inside a pass (like ONNX Runtime): no yield point.
    Each pass logs its start and end; ``gate`` holds the first pass until released."""

    def __init__(self, log: list[str]) -> None:
        self.inner, self.log = HashEmbedder(), log
        self.gate, self.inside, self.ended = threading.Event(), threading.Event(), threading.Event()
        self.model_name, self.dimension = self.inner.model_name, self.inner.dimension

    def embed(self, texts: Sequence[str]) -> Any:
        self.log.append("ingest start")
        self.inside.set()
        assert self.gate.wait(timeout=60)
        out = self.inner.embed(texts)
        self.log.append("ingest end")
        self.ended.set()
        return out


async def test_without_preemption_ingest_holds_between_slices_for_queries() -> None:
    """A query that arrives during an unpausable ingest slice shares the CPU with that slice
    only: the next slice does not start until the query is embedded."""
    events: list[str] = []
    ingest_model = UnpausableEmbedder(events)
    query_model = LayeredEmbedder("query", events, threading.Event())
    assert not isinstance(ingest_model, Preemptible)
    texts = [f"doc {i}" for i in range(6)]
    scheduler = EmbedScheduler(
        ingest_model,
        SchedulerOptions(slice_seconds=1e-9, max_slice=2),  # slices of one text
        query_embedder=query_model,
    )
    try:
        scheduler.admit(len(texts))
        ingest = asyncio.ensure_future(scheduler.embed_ingest(texts))
        assert await asyncio.to_thread(ingest_model.inside.wait, 60)  # slice 1 is running
        query = asyncio.ensure_future(scheduler.embed_query(["the query"]))
        assert await asyncio.to_thread(query_model.inside.wait, 60)  # the query is running
        ingest_model.gate.set()  # slice 1 ends while the query model is still busy...
        assert await asyncio.to_thread(ingest_model.ended.wait, 60)
        await asyncio.sleep(0.2)  # room for a wrong slice 2 to start
        assert events.count("ingest start") == 1, events  # ...and no slice 2 starts
        assert query_model.hold is not None
        query_model.hold.set()
        assert (await query).shape == (1, query_model.dimension)
        out = await ingest
        np.testing.assert_allclose(out, HashEmbedder().embed(texts))
        first_after_query = events.index("query end") + 1
        assert events[first_after_query] == "ingest start", events
    finally:
        ingest_model.gate.set()
        if query_model.hold is not None:
            query_model.hold.set()
        scheduler.close()


async def test_ingest_beyond_the_bound_is_refused_with_retry_after() -> None:
    embedder = GatedEmbedder()
    scheduler = EmbedScheduler(embedder, SchedulerOptions(max_pending=10))
    try:
        scheduler.admit(50)  # an empty lane takes one request larger than the bound
        with pytest.raises(Overloaded) as refused:
            scheduler.admit(1)
        assert refused.value.retry_after >= 1
        scheduler.release(50)
        scheduler.admit(6)
        scheduler.admit(4)
        with pytest.raises(Overloaded):
            scheduler.admit(1)
    finally:
        scheduler.close()


def gated_node(tmp_path: Path, embedder: GatedEmbedder, peer_wait: float) -> KnowledgeNode:
    """A node whose ingest lane holds 8 texts, embedded 2 at a time through ``embedder``."""
    return build(
        tmp_path,
        SqliteCatalog(tmp_path / "catalog.sqlite3"),
        embedder,
        embedding=SchedulerOptions(max_pending=8, slice_seconds=0.001, max_slice=2),
        peer_wait=peer_wait,
    )


async def test_a_full_ingest_lane_answers_writes_with_overloaded_and_stores_nothing(
    tmp_path: Path,
) -> None:
    embedder = GatedEmbedder()
    node = gated_node(tmp_path, embedder, peer_wait=0.5)
    await node.start()
    try:
        embedder.gate.clear()
        first = asyncio.ensure_future(node.contribute_many([make_fact(f"f{i}") for i in range(8)]))
        assert await asyncio.to_thread(embedder.started.wait, 60)
        with pytest.raises(Overloaded):
            await node.contribute(make_fact("one too many"))
        # peers' facts beyond the bound wait for sync instead: no error, nothing stored
        from node.records import SignedRecord

        gossiped = make_fact("from a peer", contributor=OPERATOR.address)
        assert (
            await node._receive(
                [SignedRecord(gossiped, OPERATOR.sign_cid(gossiped.cid))], Origin.GOSSIP
            )
            == 0
        )
        status = await node.status()
        assert status.ingest.pending == 8 and status.ingest.bound == 8
        assert status.ingest.deferred_to_sync == 1 and status.ingest.full
        assert status.not_ready() == ["the ingest queue is full (8 texts waiting)"]
        # queries still answer while ingest is stuck behind the gate? They wait for the
        # model like everything else, but first in line: release and check order.
        query = asyncio.ensure_future(node.query(Query("f1", mode=SearchMode.DENSE)))
        await asyncio.sleep(0.05)
        embedder.gate.set()
        await query
        await first
        assert (await node.status()).facts == 8
        assert (await node.status()).ingest.pending == 0
        assert (await node.status()).not_ready() == []
        with pytest.raises(NotFound):
            await node.get_fact(gossiped.cid)
    finally:
        await node.close()


def test_a_data_dir_is_locked_by_one_node(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path).acquire()
    with pytest.raises(DataDirInUse, match=rf"pid {os.getpid()}"):
        DataDirLock(tmp_path).acquire()
    lock.release()
    DataDirLock(tmp_path).acquire().release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from node.datadir import DataDirLock; "
        "DataDirLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirInUse, match=rf"pid {holder.pid}"):
            DataDirLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
    DataDirLock(tmp_path).acquire().release()


async def test_facts_the_catalog_lost_are_detected_and_recovered_from_blocks(
    tmp_path: Path,
) -> None:
    """A catalog that lost rows (a damaged WAL) is noticed at start: the index still has the
    ids, the blockstore the blocks. Operator-signed facts come back; others are reported."""
    store = MemoryContentStore()
    index = MemoryVectorIndex(HashEmbedder().dimension)
    other = SigningKey.generate()

    def make(catalog_path: Path) -> KnowledgeNode:
        return assemble(
            SqliteCatalog(catalog_path),
            index,
            HashEmbedder(),
            store,
            NodeOptions(data_dir=tmp_path, retrieval=RetrievalOptions(candidate_pool=10)),
            operator=OPERATOR,
            keywords=MemoryKeywordIndex(),
        )

    node = make(tmp_path / "first.sqlite3")
    await node.start()
    mine = [make_fact(f"operator fact {i}", contributor=OPERATOR.address) for i in range(3)]
    theirs = make_fact("someone else's fact", contributor=other.address)
    from node.records import SignedRecord

    await node.contribute_many(
        [SignedRecord(f, OPERATOR.sign_cid(f.cid)) for f in mine]
        + [SignedRecord(theirs, other.sign_cid(theirs.cid))]
    )
    await node._blocks.publish_pending()
    await node.close()
    assert len(index) == 4

    # the same index and blockstore, but a catalog that lost every row
    again = make(tmp_path / "lost.sqlite3")
    await again.start()
    try:
        status = await again.status()
        report = status.integrity
        assert report.scanned and report.lost_from_catalog == 4
        assert report.recovered == 3
        assert report.unrecoverable == [theirs.cid]
        assert status.facts == 3 and status.index_size == 3
        for fact in mine:
            stored = await again.get_fact(fact.cid)
            assert stored.signature == OPERATOR.sign_cid(fact.cid)
    finally:
        await again.close()
    # a clean restart does not scan again
    third = make(tmp_path / "lost.sqlite3")
    await third.start()
    try:
        assert not (await third.status()).integrity.scanned
    finally:
        await third.close()


async def test_readiness_says_when_the_network_is_down_or_cut_off(tmp_path: Path) -> None:
    import dataclasses

    from node.ports import NetworkStatus

    node = build(tmp_path, SqliteCatalog(tmp_path / "catalog.sqlite3"))
    await node.start()
    try:
        status = await node.status()
        assert status.network is None and status.not_ready() == []
        net = NetworkStatus("12D3KooW", [], 0, 0, 0, 0, 0, 0, None, "00", 0, 0)
        alone = dataclasses.replace(status, network=net)
        assert alone.not_ready() == []  # no bootstrap peers: being alone is normal
        cut_off = dataclasses.replace(status, network=dataclasses.replace(net, bootstrap_peers=2))
        assert cut_off.not_ready() == [
            "no peer connected (2 bootstrap peers configured): gossip and catch-up sync are cut off"
        ]
        connected = dataclasses.replace(
            status, network=dataclasses.replace(net, bootstrap_peers=2, connected_peers=1)
        )
        assert connected.not_ready() == []
        down = dataclasses.replace(
            status, network=dataclasses.replace(net, running=False, error="swarm task exited")
        )
        assert down.not_ready() == ["the network layer is down: swarm task exited"]
    finally:
        await node.close()


async def test_peers_facts_wait_for_room_and_leave_headroom_for_writers(tmp_path: Path) -> None:
    from node.records import SignedRecord

    def signed(text: str) -> SignedRecord:
        fact = make_fact(text, contributor=OPERATOR.address)
        return SignedRecord(fact, OPERATOR.sign_cid(fact.cid))

    embedder = GatedEmbedder()
    node = gated_node(tmp_path, embedder, peer_wait=60)
    await node.start()
    try:
        embedder.gate.clear()
        # peers' facts enter an empty lane (4 texts: half the bound) and get stuck in the model
        peers = asyncio.ensure_future(
            node._receive([signed(f"p{i}") for i in range(4)], Origin.SYNC)
        )
        assert await asyncio.to_thread(embedder.started.wait, 60)
        # a REST writer still has room: peers may fill only half of the bounds
        writer = asyncio.ensure_future(node.contribute_many([make_fact(f"w{i}") for i in range(3)]))
        await asyncio.sleep(0)
        # more peers' facts wait for room (backpressure) instead of being dropped
        later = asyncio.ensure_future(
            node._receive([signed(f"q{i}") for i in range(2)], Origin.SYNC)
        )
        await asyncio.sleep(0.3)
        assert not later.done()
        embedder.gate.set()
        assert await peers == 4
        assert all(isinstance(r, Contribution) for r in await writer)
        assert await later == 2  # stored once there was room, not left to sync
        status = await node.status()
        assert status.facts == 9 and status.ingest.deferred_to_sync == 0
    finally:
        embedder.gate.set()
        await node.close()
