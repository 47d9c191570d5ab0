"""The service's tuning knobs in one record (``NodeOptions``), built once from the settings at
the entry point (``node.bootstrap``) or by a test; the adapters take their own in their
constructors. Re-exported by ``node.service``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from node.anchoring import AnchorOptions
from node.collections import Collections
from node.embedding import SchedulerOptions
from node.federator import FederationOptions
from node.ingest import NEAR_DUPLICATE_COSINE
from node.model_identity import ModelDescription
from node.quotas import GOSSIP_BURST, GOSSIP_RATE
from node.retrieval import RetrievalOptions


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """Tuning knobs of the service (the adapters take their own in their constructors)."""

    data_dir: Path
    #: Candidate pool and the context's relevance threshold.
    retrieval: RetrievalOptions = field(default_factory=RetrievalOptions)
    #: Seconds between background saves of a changed vector index.
    index_flush_interval: float = 30.0
    #: Refuse submissions without a contributor signature (else the operator signs them).
    require_signatures: bool = False
    anchor: AnchorOptions = field(default_factory=AnchorOptions)
    embedding: SchedulerOptions = field(default_factory=SchedulerOptions)
    #: Also anchor facts received from peers (normally their origin anchors them and the
    #: chain follower adopts that anchor).
    anchor_peer_facts: bool = False
    #: Seconds a chunk of peers' facts waits for room in the ingest lane before it is left to
    #: the next catch-up sync.
    peer_wait: float = 30.0
    #: Addresses whose trust the node's reputation starts from (``node.reputation``); empty:
    #: the operator key alone.
    trust_roots: frozenset[str] = frozenset()
    #: Seconds at least between two reputation recomputations.
    reputation_interval: float = 0.5
    #: Records per second and burst each contributor may have stored from gossip; the rest
    #: wait for sync (``node.quotas``).
    gossip_quota_rate: float = GOSSIP_RATE
    gossip_quota_burst: int = GOSSIP_BURST
    #: Near-duplicate link threshold on cosine (same contributor); 0: off (``node.ingest``).
    near_duplicate_cosine: float = NEAR_DUPLICATE_COSINE
    #: What makes the node's vectors (``node.model_identity``): its CID is recorded in the data
    #: dir, reported in the status and compared with a query's ``model_cid``. ``node.bootstrap``
    #: describes the bundled model; None: the embedder's name and dimension alone
    #: (``bare_description``, as the in-package hash fake describes itself).
    model: ModelDescription | None = None
    #: The collections this node holds (``node.collections``); default: all of them.
    collections: Collections = field(default_factory=Collections)
    #: Network queries: time budget, peers asked, penalty (``node.federator``).
    federation: FederationOptions = field(default_factory=FederationOptions)
    #: Threads that rank queries (``node.workers.HotPool``); 0: one per core.
    search_threads: int = 0
