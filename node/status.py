"""Status: the node's moving parts summed up for ``/v1/status``, readiness and metrics.

Pure assembly of what the use cases and workers already count (no I/O of its own beyond what
they read), so the service's ``status`` stays one call and the numbers have one source.
"""

from __future__ import annotations

from node.anchoring import Anchorer
from node.embedding import EmbedScheduler
from node.errors import ChainError
from node.follower import ChainFollower
from node.ingest import Ingest
from node.ports import FactSearch, Ledger
from node.results import ChainStatus, CollectionsStatus, IngestStatus


def ingest_status(scheduler: EmbedScheduler, ingest: Ingest) -> IngestStatus:
    stats = scheduler.stats()
    return IngestStatus(
        pending=stats.ingest_pending,
        bound=stats.max_pending,
        queries_waiting=stats.queries_waiting,
        deferred_to_sync=ingest.deferred,
        texts_per_second=stats.texts_per_second,
        full=stats.full,
        write_error=ingest.write_error,
        over_quota=ingest.over_quota,
        other_collections=ingest.other_collections,
    )


def collections_status(ingest: Ingest, catalog: FactSearch) -> CollectionsStatus:
    return CollectionsStatus(ingest.collections.held(), catalog.collection_counts())


def chain_status(
    anchorer: Anchorer | None, ledger: Ledger | None, follower: ChainFollower | None
) -> ChainStatus | None:
    if anchorer is None or ledger is None:
        return None
    anchoring = anchorer.status()
    try:
        chain_id: int | None = ledger.chain_id
    except ChainError:
        chain_id = None
    return ChainStatus(
        rpc_url=ledger.rpc_url,
        chain_id=chain_id,
        registry=ledger.registry,
        account=ledger.account,
        queued=anchoring.queued,
        open_batches=anchoring.open_batches,
        last_anchored_block=anchoring.last_anchored_block,
        error=anchoring.error,
        follow_block=None if follower is None else follower.follow_block,
        verified_batches=0 if follower is None else follower.verified_batches,
        facts_from_chain=0 if follower is None else follower.facts_fetched,
        follow_error=None if follower is None else follower.last_error,
    )
