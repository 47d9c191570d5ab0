"""Ingest: facts in, durably stored, indexed, handed on.

``Ingest.contribute_many`` is the one write path: it skips facts the catalog has, embeds each
new text once even when concurrent calls carry it (they wait for the first), stores facts,
signatures and vectors in one catalog transaction (fsynced before it returns) and adds the
vectors to the index under the node's write lock, then wakes the block publisher and the
anchorer and, when the origin says so, announces the records to peers. ``receive`` is the door
for peers' and the chain follower's facts: chunks that may fill only ``PEER_SHARE`` of the
ingest bounds and wait ``peer_wait`` seconds for room, the rest left to the next sync.

Invariants: a call returns "created" or "exists" only for a fact that is in the catalog; an
overloaded node refuses (``Overloaded``, 503) before any work; a storage failure is kept in
``write_error`` (readiness) until a write succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import numpy as np

from node.embedding import EmbedScheduler
from node.errors import KnowhubError, Overloaded, StorageError, Unavailable
from node.facts import Fact
from node.origin import Origin
from node.ports import FactRecords, NewFact, VectorIndex
from node.results import Contribution
from node.submissions import SignedFact

log = logging.getLogger(__name__)

#: Facts from peers enter the ingest lane in chunks of this many, each waiting up to
#: ``peer_wait`` seconds until it fits in ``PEER_SHARE`` of the lane's bounds.
PEER_CHUNK = 32
PEER_SHARE = 0.5


class Ingest:
    def __init__(
        self,
        catalog: FactRecords,
        index: VectorIndex,
        scheduler: EmbedScheduler,
        write_lock: asyncio.Lock,
        *,
        anchor_peer_records: bool,
        peer_wait: float,
        on_stored: Callable[[], None],
        publish: Callable[[Sequence[tuple[bytes, str]]], None] | None,
    ) -> None:
        self._catalog = catalog
        self._index = index
        self._scheduler = scheduler
        self._write_lock = write_lock
        self._anchor_peer_records = anchor_peer_records
        self._peer_wait = peer_wait
        self._on_stored = on_stored
        self._publish = publish
        #: CIDs being embedded and stored right now, so concurrent calls do it only once.
        self._inflight: dict[str, asyncio.Future[None]] = {}
        #: Peer facts left to sync because the ingest lane was full.
        self.deferred = 0
        #: The last storage failure of a write, until a write succeeds again (readiness).
        self.write_error: str | None = None
        #: The index changed since it was last saved (the node's flusher clears it).
        self.dirty = False

    async def contribute_many(
        self,
        facts: Sequence[Fact | SignedFact | KnowhubError],
        *,
        origin: Origin = Origin.LOCAL,
    ) -> list[Contribution | KnowhubError]:
        """Store valid facts (errors pass through in place); durable when this returns.
        ``origin`` decides whether they are announced to peers and anchored here
        (``node.origin``).

        A bare ``Fact`` is stored without a signature (facts from a CAR or a peer whose
        signature is unknown); ``SignedFact``s must have been checked (see ``accept``).
        """
        signatures = {
            f.fact.cid: f.signature for f in facts if isinstance(f, SignedFact) and f.signature
        }
        plain = [f.fact if isinstance(f, SignedFact) else f for f in facts]
        valid = [f for f in plain if isinstance(f, Fact)]
        known = await asyncio.to_thread(self._catalog.existing, [f.cid for f in valid])
        fresh: dict[str, Fact] = {}
        waiting: dict[str, asyncio.Future[None]] = {}
        for fact in valid:
            if fact.cid in known or fact.cid in fresh:
                continue
            if fact.cid in self._inflight:  # being embedded by a concurrent call: not twice
                waiting[fact.cid] = self._inflight[fact.cid]
            else:
                fresh[fact.cid] = fact
        created: set[str] = set()
        failed: dict[str, KnowhubError] = {}
        if fresh:
            todo = list(fresh.values())
            self._scheduler.admit(len(todo))  # Overloaded (503) before anything is done
            loop = asyncio.get_running_loop()
            for f in todo:
                self._inflight[f.cid] = loop.create_future()
            error: BaseException | None = None
            try:
                vectors = await self._scheduler.embed_ingest([f.text for f in todo])
                async with self._write_lock:
                    anchor = origin.anchored_here(self._anchor_peer_records)
                    created = await asyncio.to_thread(
                        self._store_facts, todo, vectors, signatures, anchor
                    )
                self.write_error = None
            except BaseException as exc:
                error = exc
                if isinstance(exc, StorageError):
                    self.write_error = exc.message
                raise
            finally:
                # Waiters on these CIDs learn the outcome: stored, or this call's failure.
                # Never "exists" for a fact that was not stored.
                for f in todo:
                    _settle(self._inflight.pop(f.cid), error)
            self._on_stored()
            if origin.announced and self._publish is not None:
                self._publish(
                    [
                        (f.block, signatures[f.cid])
                        for f in todo
                        if f.cid in created and f.cid in signatures
                    ]
                )
        for cid, future in waiting.items():
            try:
                await asyncio.shield(future)  # stored by the other call, or failed there
            except KnowhubError as exc:
                failed[cid] = exc
            except Exception as exc:  # not ours to interpret: the fact is not stored
                failed[cid] = StorageError(f"storing {cid} failed: {type(exc).__name__}")
        results: list[Contribution | KnowhubError] = []
        for item in plain:
            if isinstance(item, Fact):
                if item.cid in failed:
                    results.append(failed[item.cid])
                    continue
                results.append(Contribution(item.cid, item.cid in created))
                created.discard(item.cid)  # a repeat inside one batch is not created twice
            else:
                results.append(item)
        return results

    def _store_facts(
        self, facts: list[Fact], vectors: np.ndarray, signatures: dict[str, str], anchor: bool
    ) -> set[str]:
        rows = self._catalog.insert(
            [
                NewFact(f, v, signatures.get(f.cid), anchor)
                for f, v in zip(facts, vectors, strict=True)
            ]
        )
        new = [(row_id, i) for i, (row_id, was_created) in enumerate(rows) if was_created]
        if new:
            ids = np.array([row_id for row_id, _ in new], dtype=np.int64)
            self._index.add(ids, vectors[[i for _, i in new]])
            self.dirty = True
            log.debug("stored %d new facts", len(new))
        return {facts[i].cid for _, i in new}

    async def receive(self, facts: Sequence[SignedFact], origin: Origin) -> int:
        """Facts from peers or the chain follower, in chunks that may fill at most
        ``PEER_SHARE`` of the ingest bounds (the rest stays for REST writers). A chunk waits
        up to ``peer_wait`` seconds for room (backpressure: sync and gossip readers slow down);
        what still does not fit is left for the next catch-up sync (or follower pass) instead
        of growing memory."""
        created = 0
        for start in range(0, len(facts), PEER_CHUNK):
            chunk = facts[start : start + PEER_CHUNK]
            wait = self._peer_wait
            if not await self._scheduler.wait_for_room(len(chunk), PEER_SHARE, wait):
                self.deferred += len(facts) - start
                break
            try:
                results = await self.contribute_many(chunk, origin=origin)
            except Overloaded:
                self.deferred += len(facts) - start
                break
            created += sum(1 for r in results if isinstance(r, Contribution) and r.created)
        return created


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    """Tell the waiters of a CID whether the call storing it succeeded (then the fact is in
    the catalog) or failed; a failure is marked retrieved, so nobody waiting is no warning."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
        return
    if isinstance(error, KnowhubError):
        future.set_exception(error)
    elif isinstance(error, asyncio.CancelledError):
        future.set_exception(Unavailable("the request that was storing this fact was cancelled"))
    else:
        future.set_exception(StorageError(f"storing the fact failed: {type(error).__name__}"))
    future.exception()
