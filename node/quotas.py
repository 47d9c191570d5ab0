"""Per-contributor quotas on records from gossip: one key cannot fill every node.

A gossip message is pushed to a node whether it asked or not, so the node admits from each
contributor (the record's signer) at most ``rate`` records per second with bursts up to
``burst`` (a token bucket per key). Records beyond the quota are not stored from gossip: they
wait for catch-up sync, which the node paces itself (``node.ingest.Ingest.receive``), so a
key that floods the network reaches every node's catalog at sync speed, not at the speed it
can sign. Quotas are local policy, not protocol: a record over quota is valid and its sender is
not penalised.

Invariant: memory is bounded (``max_keys`` buckets; full, idle buckets are dropped first).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from node.records import SignedRecord

#: Records per second and burst per contributor admitted from gossip, by default.
GOSSIP_RATE = 20.0
GOSSIP_BURST = 500


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class ContributorQuota:
    def __init__(
        self,
        rate: float = GOSSIP_RATE,
        burst: int = GOSSIP_BURST,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a quota needs rate > 0 and burst >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        #: Records left to sync because their contributor was over quota.
        self.deferred = 0

    def admit(self, records: Sequence[SignedRecord]) -> list[SignedRecord]:
        """The records within their contributors' quotas, in order; the rest are counted in
        ``deferred`` and left to sync."""
        now = self._clock()
        out = []
        for record in records:
            bucket = self._bucket(record.contributor or "", now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                out.append(record)
            else:
                self.deferred += 1
        return out

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self._burst, now)
            return bucket
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        return bucket

    def _prune(self, now: float) -> None:
        """Drop buckets that have refilled (forgetting them changes nothing), else the
        oldest half."""
        refill = self._burst / self._rate
        full = [k for k, b in self._buckets.items() if now - b.updated >= refill]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k].updated)
            for key in oldest[: len(oldest) // 2]:
                del self._buckets[key]
