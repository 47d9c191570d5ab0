"""Per-contributor gossip quotas (issue 20): one key's gossip beyond its quota waits for sync,
other keys and sync are not held back, and the buckets stay bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.facts import make_fact
from node.origin import Origin
from node.quotas import ContributorQuota
from node.records import SignedRecord
from node.service import NodeOptions
from node.signing import SigningKey
from tests.memory_nodes import memory_node

OPERATOR = SigningKey.generate()
FLOODER = SigningKey.generate()
OTHER = SigningKey.generate()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def signed(key: SigningKey, text: str) -> SignedRecord:
    fact = make_fact(text, {}, key.address)
    return SignedRecord(fact, key.sign_cid(fact.cid))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_per_contributor_refills_at_its_rate() -> None:
    clock = Clock()
    quota = ContributorQuota(rate=1.0, burst=3, clock=clock)
    flood = [signed(FLOODER, f"flood {n}") for n in range(5)]
    assert quota.admit(flood) == flood[:3] and quota.deferred == 2
    other = [signed(OTHER, "not held back")]
    assert quota.admit(other) == other
    clock.now = 2.0
    assert quota.admit(flood[3:]) == flood[3:]
    assert quota.admit(flood[:1]) == [] and quota.deferred == 3
    clock.now = 1000.0  # a long pause refills only up to the burst
    assert len(quota.admit(flood)) == 3


def test_the_buckets_stay_bounded() -> None:
    clock = Clock()
    quota = ContributorQuota(rate=1.0, burst=2, max_keys=10, clock=clock)
    for n in range(25):
        clock.now += 0.01
        quota.admit([signed(SigningKey.generate(), f"key {n}")])
    assert len(quota._buckets) <= 10
    assert quota.deferred == 0


@pytest.mark.anyio
async def test_gossip_over_quota_waits_for_sync_and_sync_is_not_held_back(
    tmp_path: Path,
) -> None:
    options = NodeOptions(data_dir=tmp_path, gossip_quota_rate=0.001, gossip_quota_burst=5)
    node = memory_node(tmp_path, OPERATOR, options=options)
    await node.start()
    try:
        flood = [signed(FLOODER, f"Flooded claim number {n}.") for n in range(20)]
        assert await node._receive(flood, Origin.GOSSIP) == 5
        assert await node._receive([signed(OTHER, "Another key's fact.")], Origin.GOSSIP) == 1
        status = await node.status()
        assert status.ingest.over_quota == 15 and status.ingest.deferred_to_sync == 15
        assert status.facts == 6
        assert await node._receive(flood, Origin.SYNC) == 15  # catch-up brings the rest
        assert (await node.status()).facts == 21
    finally:
        await node.close()
