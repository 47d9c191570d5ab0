"""The node's use cases: contribute facts, read them back, and retrieve ranked context.

``KnowledgeNode`` owns no technology: it drives the ports. The catalog is the source of
truth and is written (and fsynced) before a contribution is acknowledged; the vector index is
a rebuildable cache of it that is reconciled on every start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from multiformats import CID

from node import __version__
from node.anchoring import Anchorer
from node.cid import DAG_CBOR, cid_string, parse_cid
from node.content import BlockService, CarSource, DagScope, load_car
from node.curation import Attester, Curation
from node.embedding import EmbedScheduler
from node.errors import (
    ChainError,
    CollectionNotHeld,
    InvalidInput,
    KnowhubError,
    NotFound,
    Revoked,
    Unauthorized,
)
from node.facts import Fact
from node.federator import ChainRoots, Federator, federation_roots
from node.follower import ChainFollower
from node.indexes import Reconciled, SearchIndexes
from node.ingest import Ingest
from node.limits import MAX_BATCH
from node.local_search import LocalSearch
from node.manifest import Block
from node.model_identity import bare_description, model_cid
from node.moderation import Moderator
from node.options import NodeOptions as NodeOptions
from node.origin import Origin
from node.peering import Peering
from node.ports import (
    Catalog,
    ContentStore,
    Embedder,
    Ledger,
    Network,
    StoredFact,
)
from node.records import SignedRecord
from node.recovery import IntegrityReport, audit, mark_clean
from node.results import (
    CarImport,
    Contribution,
    NodeStatus,
    ProvenanceView,
    QueryResult,
)
from node.retrieval import Retriever
from node.revocation import Revocations, Revoker
from node.search import Query, Scope
from node.signing import SigningKey, signature_valid
from node.startup import check_model
from node.status import chain_status, collections_status, ingest_status
from node.submissions import NodeSink, accept, accept_each
from node.tombstone import Tombstone
from node.workers import HotPool, SearchRunner

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NodeParts:
    """Everything a node runs, built and wired by ``node.assembly.assemble``."""

    catalog: Catalog
    indexes: SearchIndexes
    embedder: Embedder
    store: ContentStore
    operator: SigningKey
    ledger: Ledger | None
    network: Network | None
    blocks: BlockService
    scheduler: EmbedScheduler
    write_lock: asyncio.Lock
    ingest: Ingest
    retriever: Retriever
    revocations: Revocations
    revoker: Revoker
    moderator: Moderator
    curation: Curation
    attester: Attester
    anchorer: Anchorer | None
    follower: ChainFollower | None


class KnowledgeNode(Peering):
    """The facade the API calls: starts and stops the parts ``node.assembly`` built, and
    answers through them."""

    def __init__(
        self,
        parts: NodeParts,
        options: NodeOptions,
        *,
        on_closed: Sequence[Callable[[], None]] = (),
    ) -> None:
        self._on_closed = list(on_closed)
        self._options = options
        self._catalog = parts.catalog
        self._indexes = parts.indexes
        self._embedder = parts.embedder
        self._model = options.model or bare_description(
            parts.embedder.model_name, parts.embedder.dimension
        )
        self._model_cid = model_cid(self._model)
        self._store = parts.store
        self._operator = parts.operator
        self._ledger = parts.ledger
        self._network = parts.network
        self._blocks = parts.blocks
        self._scheduler = parts.scheduler
        self._write_lock = parts.write_lock
        self._ingest = parts.ingest
        self._retriever = parts.retriever
        self._revocations = parts.revocations
        self._revoker = parts.revoker
        self._moderator = parts.moderator
        self._curation = parts.curation
        self._attester = parts.attester
        self._curating: asyncio.Task[None] | None = None
        self._anchorer = parts.anchorer
        self._follower = parts.follower
        self._integrity = IntegrityReport()
        self._search_workers = HotPool(options.search_threads or os.cpu_count() or 1, name="search")
        self._local = LocalSearch(
            self._retriever,
            self._scheduler,
            self._catalog,
            self._revocations,
            self._model,
            self._model_cid,
            SearchRunner(self._search_workers, writing=parts.write_lock.locked),
        )
        ledger = self._ledger
        self._federator = Federator(
            local=self._local,
            query_vector=self._retriever.query_vector,
            embed=self._scheduler.embed_query,
            network=self._network,
            held=options.collections,
            stored_collections=lambda: list(self._catalog.collection_counts()),
            model=self._model,
            model_cid=self._model_cid,
            standings=self._curation.standing,
            roots_for=None
            if ledger is None
            else ChainRoots(federation_roots(ledger, options.data_dir), ledger),
            min_relevance=self._retriever.min_relevance,
            query_terms=self._indexes.keywords.query_terms,
            text_terms=self._indexes.keywords.text_terms,
            pool_depth=self._retriever.pool_depth,
            options=options.federation,
        )
        self._flusher: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._purging: asyncio.Task[None] | None = None
        self._anchoring: asyncio.Task[None] | None = None
        self._following: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._in_thread(self._check_model)
        found = await audit(self._catalog, self._indexes.vectors, self._store, self._operator)
        self._integrity = found.report
        await self._in_thread(self._revocations.sweep)  # before reconcile: it drops their ids
        await self._in_thread(self.reconcile)
        await self._in_thread(self._curation.load)
        if found.recover:
            for start in range(0, len(found.recover), MAX_BATCH):
                await self.contribute_many(
                    found.recover[start : start + MAX_BATCH], origin=Origin.RECOVERY
                )
        self._flusher = asyncio.create_task(self._flush_periodically(), name="index-flush")
        self._publisher = asyncio.create_task(self._blocks.run_publisher(), name="publisher")
        self._purging = asyncio.create_task(self._revocations.run(), name="revocation-purge")
        self._curating = asyncio.create_task(self._curation.run(), name="reputation")
        if self._anchorer is not None:
            self._anchoring = asyncio.create_task(self._anchorer.run(), name="anchorer")
        if self._follower is not None:
            self._following = asyncio.create_task(self._follower.run(), name="chain-follower")
        if self._network is not None:
            await self._network.start(
                NodeSink(
                    self._catalog,
                    self._receive,
                    self._block_or_none,
                    self._anchor_hint,
                    self._ingest.judge,
                    self._ingest.collections,
                    self._model_cid,
                    self._federator.serve,
                )
            )

    async def close(self, anchor_timeout: float = 0.0) -> None:
        """Stop background work and save everything. With ``anchor_timeout`` > 0, first seal
        the facts waiting for a batch and try that long to get them anchored (graceful
        shutdown); whatever is not anchored by then resumes from the catalog on restart."""
        tasks = (
            self._flusher,
            self._publisher,
            self._purging,
            self._anchoring,
            self._following,
            self._curating,
        )
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._anchorer is not None and anchor_timeout > 0:
            await self._anchorer.flush(anchor_timeout)
        if self._network is not None:  # after the flush, so its anchor notices still go out
            await self._network.close()
        with contextlib.suppress(KnowhubError, TimeoutError):  # the queue survives restarts
            async with asyncio.timeout(5.0):
                await self._blocks.publish_pending()
        await self._store.close()
        if self._ledger is not None:
            with contextlib.suppress(ChainError):
                await self._in_thread(self._ledger.close)
        async with self._write_lock:
            await self._in_thread(self._indexes.save)
            with contextlib.suppress(KnowhubError):
                mark_clean(self._catalog)
            self._catalog.close()
        self._scheduler.close()
        self._search_workers.close()
        for release in self._on_closed:  # e.g. the data directory lock, last of all
            release()

    def _check_model(self) -> None:
        check_model(
            self._catalog, self._embedder, self._options.data_dir, self._model, self._model_cid
        )

    def reconcile(self) -> Reconciled:
        """Make both search indexes hold exactly the catalog's searchable ids."""
        return self._indexes.reconcile(self._catalog)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._options.index_flush_interval)
            if self._ingest.dirty:
                async with self._write_lock:
                    self._ingest.dirty = False
                    await self._in_thread(self._indexes.save)

    # -- contribute --------------------------------------------------------------------------

    def accept(self, item: Any) -> SignedRecord:
        """A submission as a signed fact (``node.submissions.accept``)."""
        return accept(item, self._operator, require_signatures=self._options.require_signatures)

    async def accept_many(self, items: Sequence[Any]) -> list[SignedRecord | KnowhubError]:
        """``accept`` for each item, in a worker thread: hashing and signing (or checking
        signatures of) a large batch takes long enough to stall the event loop, and with it
        every query."""
        return await self._in_thread(
            accept_each, items, self._operator, self._options.require_signatures
        )

    @property
    def operator(self) -> str:
        return self._operator.address

    @property
    def model_cid(self) -> str:
        """The model CID of the node's model (``node.model_identity``)."""
        return self._model_cid

    @property
    def vector_dimension(self) -> int:
        """Length of the node's embeddings (and of a query ``vector``)."""
        return self._embedder.dimension

    async def contribute(self, fact: Fact | SignedRecord) -> Contribution:
        (result,) = await self.contribute_many([fact])
        if isinstance(result, KnowhubError):
            raise result
        return result

    async def contribute_many(
        self,
        facts: Sequence[Fact | SignedRecord | KnowhubError],
        *,
        origin: Origin = Origin.LOCAL,
    ) -> list[Contribution | KnowhubError]:
        """Store valid records of any kind (errors pass through in place); durable when this
        returns (``node.ingest``)."""
        return await self._ingest.contribute_many(facts, origin=origin)

    # -- read --------------------------------------------------------------------------------

    async def get_fact(self, cid: str) -> StoredFact:
        canonical = _fact_cid(cid)
        stored = await self._in_thread(self._catalog.get, canonical)
        if stored is None:
            raise await self._in_thread(self._missing, canonical)
        await self._in_thread(self._moderator.check_served, canonical)
        return stored

    def _missing(self, cid: str) -> KnowhubError:
        """``Revoked`` (410) for a fact a tombstone erased, else ``NotFound``."""
        return self._revocations.gone(cid) or NotFound(f"no fact {cid}")

    async def revoke(
        self,
        cid: str,
        *,
        contributor: str | None = None,
        signature: str | None = None,
        reason: str | None = None,
        as_operator: bool = False,
    ) -> Contribution:
        """Revoke a fact: its contributor's tombstone (or the operator's, for a fact the node
        signed) is stored, gossiped and anchored; the fact is erased (``node.revocation``)."""
        return await self._revoker.revoke(
            _fact_cid(cid),
            contributor=contributor,
            signature=signature,
            reason=reason,
            as_operator=as_operator,
        )

    @property
    def curation(self) -> Curation:
        """Attestations and reputation (``node.curation``)."""
        return self._curation

    @property
    def attester(self) -> Attester:
        """Endorse or dispute facts (``node.curation``)."""
        return self._attester

    @property
    def moderation(self) -> Moderator:
        """Hide and unhide facts on this node (``node.moderation``)."""
        return self._moderator

    async def tombstone_for(
        self, cid: str, contributor: str | None = None, reason: str | None = None
    ) -> Tombstone:
        """The tombstone a client signs to revoke ``cid``."""
        return await self._in_thread(
            self._revoker.tombstone_for, _fact_cid(cid), contributor, reason
        )

    async def provenance(self, cid: str) -> ProvenanceView:
        canonical = _fact_cid(cid)
        found = await self._in_thread(self._catalog.provenance, canonical)
        if found is None:
            raise NotFound(f"no fact {canonical}")
        valid = signature_valid(found.cid, found.contributor, found.signature)
        return ProvenanceView(found, valid)

    async def query(self, query: Query) -> QueryResult:
        """Search this node (scope local) or also peers (scope network: ``node.federator``)."""
        if query.scope is Scope.NETWORK:
            return await self._federator.query(query)
        return await self._local.query(query)

    async def status(self) -> NodeStatus:
        return await self._in_thread(self._status)

    def _status(self) -> NodeStatus:
        return NodeStatus(
            version=__version__,
            facts=self._catalog.count(),
            index_kind=self._indexes.vectors.kind,
            index_size=len(self._indexes.vectors),
            model=self._embedder.model_name,
            dimension=self._embedder.dimension,
            model_cid=self._model_cid,
            model_precision=self._model.precision,
            data_dir=str(self._options.data_dir),
            content_store=self._store.kind,
            publication_backlog=self._catalog.publication_backlog(),
            content_store_error=self._blocks.last_error,
            operator=self._operator.address,
            require_signatures=self._options.require_signatures,
            chain=chain_status(self._anchorer, self._ledger, self._follower),
            network=None if self._network is None else self._network.status(),
            ingest=ingest_status(self._scheduler, self._ingest),
            integrity=self._integrity,
            revocations=self._revocations.counts(),
            hidden=self._moderator.count(),
            duplicates=self._catalog.duplicate_count(),
            collections=collections_status(self._ingest, self._catalog),
        )

    def _anchor_hint(self, chain_id: int, registry: str) -> None:
        ledger = self._ledger
        if self._follower is None or ledger is None or registry.lower() != ledger.registry.lower():
            return
        self._follower.wake.set()  # the follower reads the chain; the hint is not trusted

    async def _block_or_none(self, cid: str) -> bytes | None:
        try:
            return await self.get_block(cid)
        except KnowhubError:
            return None

    async def _receive(self, facts: Sequence[SignedRecord], origin: Origin) -> int:
        return await self._ingest.receive(facts, origin)

    @property
    def data_dir(self) -> Path:
        return self._options.data_dir

    # -- IPFS --------------------------------------------------------------------------------

    async def get_block(self, cid: str) -> bytes:
        """A block by CID (any codec this node stores), verified against the CID; ``Revoked``
        (410) for an erased fact's."""
        parsed = parse_cid(cid)
        await self._in_thread(self._moderator.check_served, cid_string(parsed))
        try:
            return await self._blocks.get_block(parsed)
        except NotFound:
            gone = await self._in_thread(self._revocations.gone, cid_string(parsed))
            if gone is not None:
                raise gone from None
            raise

    def walk(self, cid: str, scope: DagScope = DagScope.ALL) -> AsyncIterator[tuple[CID, bytes]]:
        return self._blocks.walk(parse_cid(cid), scope)

    async def snapshot(self) -> tuple[Block, int]:
        return await self._blocks.snapshot()

    async def import_car(self, source: CarSource) -> CarImport:
        """Verify a snapshot CAR completely (every block, and every fact's signature by its
        contributor: ``node.content.load_car``), then store its facts with their signatures and
        its manifests. Like peers' facts they are anchored here only with ``anchor_peer_facts``
        (their origin anchors them; the chain follower adopts that anchor), and, being signed,
        they are announced to peers."""
        car = await self._in_thread(load_car, source)
        created = existing = refused = 0
        for start in range(0, len(car.facts), MAX_BATCH):
            outcomes = await self.contribute_many(
                car.facts[start : start + MAX_BATCH], origin=Origin.CAR
            )
            for outcome in outcomes:
                if isinstance(outcome, Revoked | InvalidInput | Unauthorized | CollectionNotHeld):
                    refused += 1  # refused: revoked, a forged tombstone, a collection not held
                elif isinstance(outcome, KnowhubError):
                    raise outcome  # storage failed: what was stored stays, a retry completes it
                else:
                    created += outcome.created
                    existing += not outcome.created
        await self._blocks.store_dag(car.manifests, car.roots)
        roots = [cid_string(r) for r in car.roots]
        return CarImport(roots, len(car.facts), created, existing, refused)

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    async def _in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        # asyncio.to_thread, not anyio: a cancelled task must stop waiting at once (anyio
        # shields the wait and drops a native cancellation, which hung close()).
        return await asyncio.to_thread(fn, *args, **kwargs)


def _fact_cid(cid: str) -> str:
    parsed = parse_cid(cid)
    if parsed.version != 1 or parsed.codec.name != DAG_CBOR:
        raise NotFound(f"no fact {cid}: facts are CIDv1 dag-cbor")
    return cid_string(parsed)
