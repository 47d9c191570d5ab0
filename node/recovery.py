"""Detect, never hide, lost data: the start-up cross-check of catalog, index and blockstore.

The catalog is the source of truth, but it can still lose acknowledged facts: a SQLite WAL
damaged after a crash drops its committed frames silently and the node used to start
"healthy" with fewer facts. Two independent copies let the node notice:

- the **vector index** (saved every few seconds) holds the row ids it was given: ids that the
  catalog no longer has are facts it lost (before this module, reconciliation removed them
  from the index without a word);
- the **embedded blockstore** holds every published fact block (publication follows the
  acknowledgement by milliseconds): fact blocks the catalog does not have are facts it lost.

``audit`` runs before the node serves anything. It scans the blockstore only when there is a
reason: ids lost from the index, or a start after an unclean stop (the catalog's
``clean_shutdown`` mark is not set). A lost fact whose block is found is re-ingested when its
signature can be restored: facts the operator signed are signed again (EIP-191 signatures by
the node's key are deterministic), unsigned legacy facts need none; a fact signed by someone
else cannot be restored without its signature and is reported (its CID in the log and in
``/v1/status``) so that a peer's catch-up sync or a re-submission can bring it back.
Everything found is logged at ERROR and counted in the status; nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from node.errors import InvalidFact, KnowhubError
from node.facts import Fact, decode_fact
from node.ports import (
    BlockInventory,
    CatalogSettings,
    ContentStore,
    FactErasure,
    FactRecords,
    VectorIndex,
)
from node.records import SignedRecord
from node.signing import SigningKey

log = logging.getLogger(__name__)

CLEAN_SHUTDOWN = "clean_shutdown"
#: At most this many unrecoverable CIDs are kept for the status (all are logged).
MAX_REPORTED = 100


class AuditedCatalog(FactRecords, FactErasure, CatalogSettings, Protocol):
    """The catalog roles the audit uses: the facts (and which were erased on purpose), and
    whether the last shutdown was clean."""


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    #: The blockstore was scanned at start (after an unclean stop or a detected loss).
    scanned: bool = False
    #: Index ids the catalog no longer had: acknowledged facts it lost.
    lost_from_catalog: int = 0
    #: Lost facts re-ingested from their blocks.
    recovered: int = 0
    #: Lost facts whose block was found but whose contributor signature is gone.
    unrecoverable: list[str] = field(default_factory=list)
    unrecoverable_count: int = 0


@dataclass(frozen=True, slots=True)
class Audit:
    report: IntegrityReport
    #: Facts to re-ingest (with their restored signatures) before serving.
    recover: list[Fact | SignedRecord]


async def audit(
    catalog: AuditedCatalog, index: VectorIndex, store: ContentStore, operator: SigningKey
) -> Audit:
    """Compare the catalog with the index and (when needed) the blockstore."""
    return await asyncio.to_thread(
        _audit, catalog, index, store, operator, asyncio.get_running_loop()
    )


def _audit(
    catalog: AuditedCatalog,
    index: VectorIndex,
    store: ContentStore,
    operator: SigningKey,
    loop: asyncio.AbstractEventLoop,
) -> Audit:
    index_ids = index.ids()
    accounted = np.union1d(catalog.all_ids(), catalog.erased_ids())  # hidden, erased: not lost
    lost_ids = np.setdiff1d(index_ids, accounted, assume_unique=True)
    if len(lost_ids):
        log.error(
            "the catalog lost %d acknowledged facts that the vector index still had (ids %s%s): "
            "it was damaged, e.g. its write-ahead log after a crash; recovering from blocks",
            len(lost_ids),
            lost_ids[:10].tolist(),
            "..." if len(lost_ids) > 10 else "",
        )
    clean = catalog.get_setting(CLEAN_SHUTDOWN) == "1"
    catalog.set_setting(CLEAN_SHUTDOWN, "0")  # until close() says otherwise
    if (clean and not len(lost_ids)) or not isinstance(store, BlockInventory):
        if len(lost_ids):
            log.error("the %s content store cannot be listed: nothing to recover from", store.kind)
        return Audit(IntegrityReport(lost_from_catalog=len(lost_ids)), [])
    record_cids = [c for c in store.list_cids() if c.startswith("bafyrei")]  # CIDv1 dag-cbor
    have = catalog.existing(record_cids)
    recover: list[Fact | SignedRecord] = []
    unrecoverable: list[str] = []
    for cid in (c for c in record_cids if c not in have):
        fact = _fact_block(store, cid, loop)
        if fact is None:  # a manifest or another DAG-CBOR block, not a fact
            continue
        if fact.contributor == operator.address:
            recover.append(SignedRecord(fact, operator.sign_cid(fact.cid)))
        elif fact.contributor is None:
            recover.append(fact)
        else:
            unrecoverable.append(fact.cid)
    if recover:
        log.error("re-ingesting %d facts the catalog lost, from their blocks", len(recover))
    if unrecoverable:
        log.error(
            "%d facts the catalog lost are signed by other contributors and cannot be restored "
            "without their signatures (a peer's sync or a re-submission brings them back): %s",
            len(unrecoverable),
            " ".join(unrecoverable),
        )
    report = IntegrityReport(
        scanned=True,
        lost_from_catalog=len(lost_ids),
        recovered=len(recover),
        unrecoverable=unrecoverable[:MAX_REPORTED],
        unrecoverable_count=len(unrecoverable),
    )
    return Audit(report, recover)


def mark_clean(catalog: CatalogSettings) -> None:
    catalog.set_setting(CLEAN_SHUTDOWN, "1")


def _fact_block(store: ContentStore, cid: str, loop: asyncio.AbstractEventLoop) -> Fact | None:
    try:
        data = asyncio.run_coroutine_threadsafe(store.get(cid), loop).result()
    except KnowhubError as exc:
        log.error("block %s could not be read while recovering: %s", cid, exc.message)
        return None
    try:
        fact = decode_fact(data)
    except InvalidFact:
        return None
    return fact if fact.cid == cid else None
