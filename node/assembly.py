"""Assembly: one place that builds a node's use cases and background workers from its ports.

``assemble`` takes the adapters (which ``node.bootstrap`` builds from settings, and tests
build from fakes) and wires everything that runs inside a node: the block service and its
publisher, the embedding scheduler, ingest with its record rules (revocation), retrieval,
moderation, the anchorer and the chain follower. ``KnowledgeNode`` receives them ready made
(``NodeParts``) and only starts, stops and calls them; nothing in the service constructs a
worker, so a worker can be replaced or left out in one place.

Invariant: every part shares the one catalog, pair of search indexes (vectors and keywords,
``node.indexes``) and write lock it is given here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial

from node.anchoring import Anchorer
from node.content import BlockService
from node.curation import Attester, Curation
from node.embedding import EmbedScheduler
from node.federation import holders_of
from node.follower import ChainFollower
from node.indexes import SearchIndexes
from node.ingest import Ingest
from node.moderation import Moderator
from node.origin import Origin
from node.ports import (
    AnchorEvent,
    Catalog,
    ContentStore,
    Embedder,
    KeywordIndex,
    Ledger,
    Network,
    VectorIndex,
)
from node.quotas import ContributorQuota
from node.retrieval import Retriever
from node.revocation import Revocations, Revoker
from node.service import KnowledgeNode, NodeOptions, NodeParts
from node.signing import SigningKey


def assemble(
    catalog: Catalog,
    index: VectorIndex,
    embedder: Embedder,
    store: ContentStore,
    options: NodeOptions,
    *,
    keywords: KeywordIndex,
    operator: SigningKey,
    ledger: Ledger | None = None,
    network: Network | None = None,
    on_closed: Sequence[Callable[[], None]] = (),
    query_embedder: Embedder | None = None,
) -> KnowledgeNode:
    """A node on these adapters, with its use cases and workers built and wired."""
    blocks = BlockService(store, catalog)
    anchorer = (
        None
        if ledger is None
        else Anchorer(
            catalog, ledger, blocks, options.anchor, on_anchored=_announcer(ledger, network)
        )
    )

    curation = Curation(
        catalog, options.trust_roots or {operator.address}, interval=options.reputation_interval
    )

    def wake_workers() -> None:
        """New records are stored: the block publisher and the anchorer have work, and
        attestations waiting for their facts may join the reputation graph."""
        blocks.wake.set()
        if anchorer is not None:
            anchorer.wake.set()
        curation.facts_arrived()

    scheduler = EmbedScheduler(embedder, options.embedding, query_embedder=query_embedder)
    write_lock = asyncio.Lock()
    revocations = Revocations(catalog, store)
    indexes = SearchIndexes(index, keywords)
    ingest = Ingest(
        catalog,
        indexes,
        scheduler,
        write_lock,
        anchor_peer_records=options.anchor_peer_facts,
        peer_wait=options.peer_wait,
        on_stored=wake_workers,
        publish=None if network is None else network.publish,
        rules=[revocations, curation],
        near_duplicate_cosine=options.near_duplicate_cosine,
        collections=options.collections,
        gossip_quota=ContributorQuota(options.gossip_quota_rate, options.gossip_quota_burst),
        holders=None if network is None else partial(holders_of, network),
    )
    follower = (
        None
        if ledger is None
        else ChainFollower(
            catalog,
            ledger,
            network,
            blocks,
            partial(ingest.receive, origin=Origin.CHAIN),
            withdrawn=ingest.withdrawn,
            not_held=ingest.not_held,
            holds=options.collections.holds,
        )
    )
    parts = NodeParts(
        catalog=catalog,
        indexes=indexes,
        embedder=embedder,
        store=store,
        operator=operator,
        ledger=ledger,
        network=network,
        blocks=blocks,
        scheduler=scheduler,
        write_lock=write_lock,
        ingest=ingest,
        retriever=Retriever(
            catalog,
            index,
            keywords,
            embedder,
            options.retrieval,
            standing=curation.standing,
            collections=options.collections,
        ),
        revocations=revocations,
        revoker=Revoker(catalog, revocations, operator, ingest.contribute_many),
        moderator=Moderator(catalog, indexes, write_lock, ingest.mark_dirty),
        curation=curation,
        attester=Attester(catalog, operator, ingest.contribute_many),
        anchorer=anchorer,
        follower=follower,
    )
    return KnowledgeNode(parts, options, on_closed=on_closed)


def _announcer(ledger: Ledger, network: Network | None) -> Callable[[AnchorEvent], None]:
    def announce(event: AnchorEvent) -> None:
        if network is not None:
            network.announce_anchor(ledger.chain_id, ledger.registry, event)

    return announce
