"""Ingest: signed records of every kind in, durably stored, indexed, handed on.

``Ingest.contribute_many`` is the one write path. Every record first passes the node's
**rules** (``RecordRule``: e.g. a revoked fact is refused, a tombstone must be by the fact's
contributor); then facts are embedded (each new text once even when concurrent calls carry it:
they wait for the first) and stored with signatures and vectors in one catalog transaction
(fsynced before it returns), their vectors added to the index, and records of other kinds are
stored whole (``RecordBook``), all under the node's write lock, where the rules are asked again
so that a record and a correction of it arriving together are ordered. The rules then apply
their effects to what was stored (a tombstone erases its fact). Finally the block publisher and
the anchorer are woken and, when the origin says so, the records are announced to peers.
``receive`` is the door for peers' and the chain follower's records: chunks that may fill only
``PEER_SHARE`` of the ingest bounds and wait ``peer_wait`` seconds for room, the rest left to
the next sync. A fact of a collection the node does not hold (``node.collections``) is refused
before anything else (``CollectionNotHeld`` in its place) and, when it came from elsewhere
(gossip, sync, CAR, chain), counted in ``other_collections``: never embedded, nobody's fault.

Invariants: a call returns "created" or "exists" only for a record that is in the catalog; an
overloaded node refuses (``Overloaded``, 503) before any work; a storage failure is kept in
``write_error`` (readiness) until a write succeeds; a record the rules refuse is never stored.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from node.collections import Collections
from node.embedding import EmbedScheduler
from node.errors import CollectionNotHeld, KnowhubError, Overloaded, StorageError, Unavailable
from node.facts import Fact
from node.indexes import SearchIndexes
from node.origin import Origin
from node.ports import DuplicateBook, FactRecords, NewFact, RecordBook
from node.quotas import ContributorQuota
from node.records import RecordBody, SignedRecord
from node.results import Contribution

log = logging.getLogger(__name__)

#: Facts from peers enter the ingest lane in chunks of this many, each waiting up to
#: ``peer_wait`` seconds until it fits in ``PEER_SHARE`` of the lane's bounds.
PEER_CHUNK = 32
PEER_SHARE = 0.5
#: A new fact whose embedding has at least this cosine with a stored fact of the same
#: contributor, and that states the same numbers, is linked to it as a near-duplicate
#: (``index.sqlite_duplicates``) and left out of search; same words after normalisation
#: (``node.facts.text_key``) link whoever wrote them.
NEAR_DUPLICATE_COSINE = 0.97
#: Nearest stored facts compared with each new fact for that.
NEAR_DUPLICATE_NEIGHBOURS = 3


Item = Fact | SignedRecord | KnowhubError


class IngestCatalog(FactRecords, RecordBook, DuplicateBook, Protocol):
    """The catalog roles the write path uses."""


class RecordRule(Protocol):
    """A rule about records that depends on what the node holds (``node.revocation``)."""

    def refuse(self, records: Sequence[RecordBody]) -> dict[str, KnowhubError]:
        """CID -> why that record may not be stored now (blocking; catalog reads): what
        ``judge`` says, and refusals that are nobody's fault (``Revoked``)."""
        ...

    def judge(self, records: Sequence[RecordBody]) -> dict[str, KnowhubError]:
        """CID -> why that record is invalid given what this node holds: the sender's fault
        (``InvalidInput`` or ``Unauthorized``; peers are penalised for it). Asked for every
        gossip message, so it reads the catalog only for kinds that can be invalid by state."""
        ...

    def withdrawn(self, cids: Sequence[str]) -> set[str]:
        """The CIDs among ``cids`` this node will never hold (a revoked fact): nobody needs
        to fetch them (blocking)."""
        ...

    def stored(self, records: Sequence[SignedRecord]) -> list[int]:
        """Apply the effects of records just stored (blocking, under the write lock); the
        catalog row ids that left the catalog (their vectors leave the index)."""
        ...


class Ingest:
    def __init__(
        self,
        catalog: IngestCatalog,
        indexes: SearchIndexes,
        scheduler: EmbedScheduler,
        write_lock: asyncio.Lock,
        *,
        anchor_peer_records: bool,
        peer_wait: float,
        on_stored: Callable[[], None],
        publish: Callable[[Sequence[SignedRecord]], None] | None,
        rules: Sequence[RecordRule] = (),
        near_duplicate_cosine: float = NEAR_DUPLICATE_COSINE,
        gossip_quota: ContributorQuota | None = None,
        collections: Collections | None = None,
        holders: Callable[[str], tuple[str, ...]] | None = None,
    ) -> None:
        self._gossip_quota = gossip_quota
        #: Peers that advertise a collection (the directory), named in a refusal.
        self._holders = holders
        self.collections = collections or Collections()
        #: Facts from elsewhere dropped, before embedding, for a collection not held here.
        self.other_collections = 0
        self._rules = list(rules)
        self._near_duplicate_cosine = near_duplicate_cosine
        self._catalog = catalog
        self._indexes = indexes
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

    @property
    def over_quota(self) -> int:
        """Gossiped records left to sync because their contributor was over quota."""
        return 0 if self._gossip_quota is None else self._gossip_quota.deferred

    def mark_dirty(self) -> None:
        """The index changed outside this write path (moderation): save it at the next flush."""
        self.dirty = True

    def refuse(self, records: Sequence[RecordBody]) -> dict[str, KnowhubError]:
        """Why each refused record may not be stored now, by CID (every rule asked)."""
        refused: dict[str, KnowhubError] = {}
        if records:
            for rule in self._rules:
                for cid, why in rule.refuse(records).items():
                    refused.setdefault(cid, why)
        return refused

    def judge(self, records: Sequence[RecordBody]) -> dict[str, KnowhubError]:
        """Why each record is invalid given this node's state (the sender's fault), by CID."""
        invalid: dict[str, KnowhubError] = {}
        if records:
            for rule in self._rules:
                for cid, why in rule.judge(records).items():
                    invalid.setdefault(cid, why)
        return invalid

    def withdrawn(self, cids: Sequence[str]) -> set[str]:
        """The CIDs among ``cids`` some rule says this node will never hold."""
        out: set[str] = set()
        for rule in self._rules:
            out |= rule.withdrawn(cids)
        return out

    async def contribute_many(
        self, items: Sequence[Item], *, origin: Origin = Origin.LOCAL
    ) -> list[Contribution | KnowhubError]:
        """Store valid records of any kind (errors pass through in place); durable when this
        returns. ``origin`` decides whether they are announced to peers and anchored here
        (``node.origin``).

        A bare ``Fact`` is stored without a signature (a recovered fact whose signature was
        lost); a ``SignedRecord`` was checked where it was made (``node.records``).
        """
        items = self._held(items, origin)
        bodies = [_body(i) for i in items if not isinstance(i, KnowhubError)]
        refused = await asyncio.to_thread(self.refuse, bodies)
        facts = [
            i
            for i in items
            if isinstance(i, Fact | SignedRecord) and _is_fact(i) and i.cid not in refused
        ]
        others = [
            i
            for i in items
            if isinstance(i, SignedRecord) and not _is_fact(i) and i.cid not in refused
        ]
        failed: dict[str, KnowhubError] = dict(refused)
        created = await self._store_facts_once(facts, origin, failed)
        if others:
            created |= await self._store_records(others, origin, failed)
        new = [i for i in items if isinstance(i, SignedRecord) and i.cid in created]
        if created:
            self._on_stored()
        if new and origin.announced and self._publish is not None:
            self._publish(new)
        results: list[Contribution | KnowhubError] = []
        for item in items:
            if isinstance(item, KnowhubError):
                results.append(item)
                continue
            cid = _body(item).cid
            if cid in failed:
                results.append(failed[cid])
                continue
            results.append(Contribution(cid, cid in created))
            created.discard(cid)  # a repeat inside one batch is not created twice
        return results

    def _held(self, items: Sequence[Item], origin: Origin) -> Sequence[Item]:
        """``items`` with each fact of a collection this node does not hold replaced by
        ``CollectionNotHeld``; those from elsewhere than a local writer are counted."""
        if self.collections.all:
            return items
        out: list[Item] = []
        for item in items:
            name = None if isinstance(item, KnowhubError) else self._not_held(item)
            if name is None:
                out.append(item)
                continue
            if origin is not Origin.LOCAL:
                self.other_collections += 1
                out.append(CollectionNotHeld(f"collection {name!r} not held", field="collection"))
                continue
            holders = () if self._holders is None else self._holders(name)
            where = f"; peers that hold it: {', '.join(holders)}" if holders else ""
            out.append(
                CollectionNotHeld(
                    f"this node does not hold collection {name!r}; it holds: "
                    f"{self.collections.describe()}{where}",
                    holders=holders,
                    field="collection",
                )
            )
        return out

    def not_held(self, records: Sequence[SignedRecord]) -> set[str]:
        """The CIDs of ``records`` this node drops for their collection (the chain follower
        completes a batch without them)."""
        return {r.cid for r in records if self._not_held(r) is not None}

    def _not_held(self, item: Fact | SignedRecord) -> str | None:
        """The collection of ``item`` when it is a fact of one this node does not hold."""
        if self.collections.all or not _is_fact(item):
            return None
        name = _fact(item).collection
        return None if self.collections.holds(name) else name

    async def _store_facts_once(
        self, items: Sequence[Fact | SignedRecord], origin: Origin, failed: dict[str, KnowhubError]
    ) -> set[str]:
        """Embed and store the new facts among ``items``; facts a concurrent call is storing
        are waited for. Failures land in ``failed``; returns the CIDs created here."""
        if not items:
            return set()
        signatures = {i.cid: i.signature for i in items if isinstance(i, SignedRecord)}
        valid = [_fact(i) for i in items]
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
                        self._store_facts, todo, vectors, signatures, anchor, failed
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
                    _settle(self._inflight.pop(f.cid), error, failed.get(f.cid))
        for cid, future in waiting.items():
            try:
                await asyncio.shield(future)  # stored by the other call, or failed there
            except KnowhubError as exc:
                failed[cid] = exc
            except Exception as exc:  # not ours to interpret: the fact is not stored
                failed[cid] = StorageError(f"storing {cid} failed: {type(exc).__name__}")
        return created

    def _store_facts(
        self,
        facts: list[Fact],
        vectors: np.ndarray,
        signatures: dict[str, str],
        anchor: bool,
        failed: dict[str, KnowhubError],
    ) -> set[str]:
        # asked again under the write lock: a correction stored since the first check wins
        refused = self.refuse(facts)
        failed.update(refused)
        keep = [i for i, f in enumerate(facts) if f.cid not in refused]
        hints = self._near_duplicates([facts[i] for i in keep], vectors[keep])
        rows = self._catalog.insert(
            [
                NewFact(
                    facts[i],
                    vectors[i],
                    signatures.get(facts[i].cid),
                    anchor,
                    duplicate_of=hints.get(facts[i].cid),
                )
                for i in keep
            ]
        )
        new = [(row_id, keep[n]) for n, (row_id, was_created) in enumerate(rows) if was_created]
        if new:
            repeats = self._catalog.duplicates_among([row_id for row_id, _ in new])
            searchable = [(row_id, i) for row_id, i in new if row_id not in repeats]
            if searchable:
                ids = np.array([row_id for row_id, _ in searchable], dtype=np.int64)
                kept = [i for _, i in searchable]
                self._indexes.add(ids, vectors[kept], [facts[i].text for i in kept])
                self.dirty = True
            log.debug("stored %d new facts (%d near-duplicates)", len(new), len(repeats))
        return {facts[i].cid for _, i in new}

    def _near_duplicates(self, facts: list[Fact], vectors: np.ndarray) -> dict[str, int]:
        """CID -> row id of a stored fact by the same contributor whose embedding is nearly
        the same (cosine >= the threshold; 0 turns the check off)."""
        if self._near_duplicate_cosine <= 0 or not facts or len(self._indexes.vectors) == 0:
            return {}
        found: dict[str, int] = {}
        for fact, vector in zip(facts, vectors, strict=True):
            if fact.contributor is None:
                continue
            near = [
                h
                for h in self._indexes.vectors.search(vector, NEAR_DUPLICATE_NEIGHBOURS)
                if h.score >= self._near_duplicate_cosine
            ]
            if not near:
                continue
            rows = self._catalog.get_by_ids([h.id for h in near])
            for hit in near:
                row = rows.get(hit.id)
                if (
                    row is not None
                    and row.contributor == fact.contributor
                    and row.cid != fact.cid
                    and _numbers(row.text) == _numbers(fact.text)
                ):
                    found[fact.cid] = hit.id
                    break
        return found

    async def _store_records(
        self, records: list[SignedRecord], origin: Origin, failed: dict[str, KnowhubError]
    ) -> set[str]:
        """Store records of kinds other than fact and apply the rules' effects, under the
        write lock (in a worker thread). Returns the CIDs created."""
        anchor = origin.anchored_here(self._anchor_peer_records)
        async with self._write_lock:
            try:
                created = await asyncio.to_thread(self._put_records, records, anchor, failed)
                self.write_error = None
            except StorageError as exc:
                self.write_error = exc.message
                raise
        return created

    def _put_records(
        self, records: list[SignedRecord], anchor: bool, failed: dict[str, KnowhubError]
    ) -> set[str]:
        refused = self.refuse([r.body for r in records])
        failed.update(refused)
        keep = [r for r in records if r.cid not in refused]
        flags = self._catalog.put_records(keep, anchor)
        new = [r for r, was_created in zip(keep, flags, strict=True) if was_created]
        gone: list[int] = []
        for rule in self._rules:
            gone += rule.stored(new)
        if gone:
            self._indexes.erase(np.array(sorted(set(gone)), dtype=np.int64))
            self.dirty = True
        return {r.cid for r in new}

    async def receive(self, facts: Sequence[SignedRecord], origin: Origin) -> int:
        """Facts from peers or the chain follower, in chunks that may fill at most
        ``PEER_SHARE`` of the ingest bounds (the rest stays for REST writers). A chunk waits
        up to ``peer_wait`` seconds for room (backpressure: sync and gossip readers slow down);
        what still does not fit is left for the next catch-up sync (or follower pass) instead
        of growing memory. Facts of collections not held here are dropped first (counted), then
        gossip is held to per-contributor quotas (``node.quotas``)."""
        if not self.collections.all:
            held = [r for r in facts if self._not_held(r) is None]
            self.other_collections += len(facts) - len(held)
            facts = held
        if origin is Origin.GOSSIP and self._gossip_quota is not None:
            admitted = self._gossip_quota.admit(facts)
            self.deferred += len(facts) - len(admitted)
            facts = admitted
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


def _numbers(text: str) -> list[str]:
    """The numbers a text states, in order: two texts that state different numbers are never
    near-duplicates, however close their embeddings ("boils at 100 degrees" / "at 90")."""
    return _NUMBER.findall(text)


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _body(item: Fact | SignedRecord) -> RecordBody:
    return item.body if isinstance(item, SignedRecord) else item


def _is_fact(item: Item) -> bool:
    return isinstance(item, Fact) or (
        isinstance(item, SignedRecord) and isinstance(item.body, Fact)
    )


def _fact(item: Fact | SignedRecord) -> Fact:
    body = _body(item)
    assert isinstance(body, Fact)  # _is_fact chose it
    return body


def _settle(
    future: asyncio.Future[None], error: BaseException | None, refused: KnowhubError | None
) -> None:
    """Tell the waiters of a CID whether the call storing it succeeded (then the fact is in
    the catalog), was refused by a rule, or failed; a failure is marked retrieved, so nobody
    waiting is no warning."""
    if future.done():
        return
    error = refused if error is None else error
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
