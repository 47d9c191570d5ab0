"""Revocation: what a tombstone (``node.tombstone``) does to the node that accepts it.

``Revocations`` is a rule of the write path (``node.ingest.RecordRule``):

- **refuse**: a fact that a stored tombstone by *its own contributor* revokes is refused
  (``Revoked``, 410: no fault of the sender's, who may be behind), whether it comes back by
  REST, gossip, sync, a CAR or a chain rebuild, and whether the tombstone arrived before or
  after it. A tombstone whose fact this node holds but whose signer is someone else is refused
  as ``NotContributor`` (the sender is penalised like any invalid gossip); one naming a record
  that is not a fact is ``InvalidFact``. A tombstone for a fact this node has never seen is
  kept: nobody can tell yet whose it is, and it can only ever revoke its signer's own fact.
- **stored**: a new tombstone erases its fact when the signer is the fact's contributor: the
  catalog row, text, metadata, vector, keyword entry (``FactErasure``), the vector in the index
  (the row id is returned to the write path) and, once the write lock is released, the block
  in the content store (``purge``, retried until it succeeds; ``sweep`` at start redoes what a
  crash interrupted).
- **withdrawn**: facts that tombstones name are never fetched for a chain rebuild.

``Revoker`` is the use case behind ``DELETE /v1/facts/{cid}``, ``knowhub revoke`` and the MCP
tool: it builds and checks the tombstone (signed by the contributor, or by the operator key
for facts the node signed) and stores it through the one write path, so it is gossiped and
anchored like every record.

Invariant: a fact and a tombstone by its contributor are never both in the catalog after a
write returns (both are decided under the node's write lock).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from node.errors import (
    InvalidFact,
    KnowhubError,
    NotContributor,
    NotFound,
    Revoked,
    SignatureRequired,
)
from node.facts import Fact
from node.ports import ContentStore, FactErasure, FactRecords, RecordBook, StoredRecord
from node.records import RecordBody, SignedRecord
from node.results import Contribution, RevocationCounts
from node.signing import SigningKey, check_signature, normalize_signature
from node.tombstone import TOMBSTONE_KIND_NAME, Tombstone, make_tombstone

log = logging.getLogger(__name__)

#: Tries to delete an erased fact's block from the content store (5 s apart) before giving up.
PURGE_ATTEMPTS = 5


class RevocationCatalog(FactRecords, RecordBook, FactErasure, Protocol):
    """The catalog roles revocation uses."""


class Revocations:
    def __init__(self, catalog: RevocationCatalog, store: ContentStore) -> None:
        self._catalog = catalog
        self._store = store
        self._purge: set[str] = set()
        self._attempts: dict[str, int] = {}
        self.wake = asyncio.Event()
        self.erased = 0
        #: Blocks the content store would not delete after ``PURGE_ATTEMPTS`` tries (a Kubo
        #: daemon keeps a block a pinned manifest references); logged, counted, given up.
        self.purge_failed = 0

    # -- the write path's rule -------------------------------------------------------------

    def refuse(self, records: Sequence[RecordBody]) -> dict[str, KnowhubError]:
        refused: dict[str, KnowhubError] = {}
        facts = [r for r in records if isinstance(r, Fact)]
        if facts:
            tombstones = self._tombstones_about([f.cid for f in facts])
            for fact in facts:
                by_owner = [
                    t for t in tombstones.get(fact.cid, []) if t.contributor == fact.contributor
                ]
                if by_owner:
                    refused[fact.cid] = _revoked(fact.cid, by_owner[0].cid)
        refused.update(self.judge(records))
        return refused

    def judge(self, records: Sequence[RecordBody]) -> dict[str, KnowhubError]:
        """Only tombstones can be invalid by state: facts cost no catalog read here."""
        invalid: dict[str, KnowhubError] = {}
        for tombstone in (r for r in records if isinstance(r, Tombstone)):
            why = self._judge_one(tombstone)
            if why is not None:
                invalid[tombstone.cid] = why
        return invalid

    def _judge_one(self, tombstone: Tombstone) -> KnowhubError | None:
        fact = self._catalog.get(tombstone.revokes)
        if fact is not None and fact.contributor != tombstone.contributor:
            return NotContributor(
                f"tombstone {tombstone.cid} is signed by {tombstone.contributor}, but fact "
                f"{tombstone.revokes} is by {fact.contributor}: only a fact's contributor can "
                "revoke it",
                field="contributor",
            )
        if fact is None:
            other = self._catalog.get_record(tombstone.revokes)
            if other is not None:
                return InvalidFact(
                    f"tombstone {tombstone.cid} revokes a {other.kind}, not a fact",
                    field="revokes",
                )
        return None

    def withdrawn(self, cids: Sequence[str]) -> set[str]:
        return set(self._tombstones_about(cids))

    def stored(self, records: Sequence[SignedRecord]) -> list[int]:
        erased: list[int] = []
        for record in records:
            body = record.body
            if not isinstance(body, Tombstone):
                continue
            # absent: never here (a tombstone may come first); another contributor's: refused
            row = self._erase(body.revokes, body.contributor)
            if row is not None:
                erased.append(row)
                log.info("fact %s revoked by tombstone %s: erased", body.revokes, body.cid)
        if self._purge:
            self.wake.set()
        return erased

    def _erase(self, fact_cid: str, contributor: str | None) -> int | None:
        """Erase ``fact_cid`` when it is stored and by ``contributor`` (the tombstone's
        signer) and queue its block for deletion; its row id, or None."""
        fact = self._catalog.get(fact_cid)
        if fact is None or fact.contributor != contributor:
            return None
        row = self._catalog.erase_fact(fact_cid)
        if row is not None:
            self.erased += 1
            self._purge.add(fact_cid)
        return row

    # -- the content store -----------------------------------------------------------------

    async def run(self) -> None:
        """Background: delete erased facts' blocks from the content store, retrying."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            if not await self.purge():
                await asyncio.sleep(5.0)
                self.wake.set()

    async def purge(self) -> bool:
        """Delete the blocks waiting to leave the store; False while some could not be (they
        are tried again, ``PURGE_ATTEMPTS`` times in all)."""
        for cid in sorted(self._purge):
            try:
                await self._store.delete(cid)
            except KnowhubError as exc:
                tries = self._attempts[cid] = self._attempts.get(cid, 0) + 1
                if tries < PURGE_ATTEMPTS:
                    log.warning("revoked block %s not deleted yet: %s", cid, exc.message)
                    return False
                log.error(
                    "revoked block %s stays in the %s store after %d tries: %s",
                    cid,
                    self._store.kind,
                    tries,
                    exc.message,
                )
                self.purge_failed += 1
            self._purge.discard(cid)
            self._attempts.pop(cid, None)
        return True

    def sweep(self) -> list[int]:
        """At start (blocking, before serving): finish what a crash interrupted. Facts still
        in the catalog that a stored tombstone by their contributor revokes are erased (row
        ids returned for the index), and every revoked fact's block is queued for deletion."""
        tombstones = self._catalog.records_of_kind(TOMBSTONE_KIND_NAME)
        erased: list[int] = []
        for tombstone in tombstones:
            subject = tombstone.subject
            if subject is None:
                continue
            fact = self._catalog.get(subject)
            if fact is None:
                self._purge.add(subject)  # erased before: its block may still be stored
                continue
            row = self._erase(subject, tombstone.contributor)
            if row is not None:
                erased.append(row)
                log.warning("fact %s was revoked before a crash: erased now", subject)
        if self._purge:
            self.wake.set()
        return erased

    # -- reads -----------------------------------------------------------------------------

    def gone(self, cid: str) -> Revoked | None:
        """``Revoked`` for a fact this node does not hold and a tombstone names, else None."""
        tombstones = self._tombstones_about([cid]).get(cid)
        if not tombstones or self._catalog.get(cid) is not None:
            return None
        return _revoked(cid, tombstones[0].cid)

    def counts(self) -> RevocationCounts:
        return RevocationCounts(
            tombstones=self._catalog.record_counts().get(TOMBSTONE_KIND_NAME, 0),
            erased=self.erased,
            purge_pending=len(self._purge),
            purge_failed=self.purge_failed,
        )

    def tombstone_cids(self, cids: Sequence[str]) -> dict[str, str]:
        """Fact CID -> the CID of a tombstone this node holds for it, for those with one."""
        return {cid: found[0].cid for cid, found in self._tombstones_about(cids).items()}

    def _tombstones_about(self, cids: Sequence[str]) -> dict[str, list[StoredRecord]]:
        out: dict[str, list[StoredRecord]] = {}
        for record in self._catalog.records_about(cids, TOMBSTONE_KIND_NAME):
            if record.subject is not None:
                out.setdefault(record.subject, []).append(record)
        return out


def _revoked(fact_cid: str, tombstone_cid: str) -> Revoked:
    return Revoked(
        f"fact {fact_cid} was revoked by its contributor (tombstone {tombstone_cid})",
        tombstone=tombstone_cid,
    )


class Revoker:
    """The use case: revoke a fact with its contributor's signature, or the operator's."""

    def __init__(
        self,
        catalog: RevocationCatalog,
        revocations: Revocations,
        operator: SigningKey,
        store: Callable[[Sequence[SignedRecord]], Awaitable[list[Contribution | KnowhubError]]],
    ) -> None:
        self._catalog = catalog
        self._revocations = revocations
        self._operator = operator
        self._store = store

    def tombstone_for(self, cid: str, contributor: str | None, reason: str | None) -> Tombstone:
        """The tombstone a revocation of ``cid`` signs (``contributor`` None: the fact's own),
        so that a client can sign its CID; ``NotFound`` when the node has no such fact."""
        fact = self._catalog.get(cid)
        if fact is None:
            gone = self._revocations.gone(cid)
            if gone is not None:
                raise gone
            raise NotFound(f"no fact {cid}")
        if fact.contributor is None:
            raise NotContributor(f"fact {cid} has no contributor: nobody can sign its revocation")
        return make_tombstone(cid, contributor or fact.contributor, reason)

    async def revoke(
        self,
        cid: str,
        *,
        contributor: str | None,
        signature: str | None,
        reason: str | None,
        as_operator: bool,
    ) -> Contribution:
        """Store the tombstone of ``cid``; its CID and whether it is new. A repeated revocation
        of an erased fact answers with the tombstone that erased it."""
        try:
            tombstone = await asyncio.to_thread(self.tombstone_for, cid, contributor, reason)
        except Revoked as exc:
            return Contribution(exc.tombstone, False)
        if signature is None:
            if not as_operator:
                raise SignatureRequired(
                    "a revocation needs the contributor's signature of the tombstone CID "
                    "(EIP-191), or the operator's API key for a fact the node signed",
                    field="signature",
                )
            if tombstone.contributor != self._operator.address:
                raise NotContributor(
                    f"fact {cid} is by {tombstone.contributor}; the operator key can revoke "
                    "only facts the node signed",
                    field="contributor",
                )
            signature = self._operator.sign_cid(tombstone.cid)
        else:
            signature = normalize_signature(signature)
            check_signature(tombstone.cid, tombstone.contributor, signature)
        (outcome,) = await self._store([SignedRecord(tombstone, signature)])
        if isinstance(outcome, KnowhubError):
            raise outcome
        return outcome
