"""What the node's use cases answer: contributions, ranked facts, provenance views, status.

Plain frozen records, built by ``node.service`` and its helpers and turned into wire schemas at
the edge (``api.schemas``, ``api.views``); nothing here does work beyond deciding readiness
from a status (``NodeStatus.not_ready``).
"""

from __future__ import annotations

from dataclasses import dataclass

from node.ports import NetworkStatus, StoredFact
from node.proofs import HitProof
from node.provenance import Provenance
from node.recovery import IntegrityReport


@dataclass(frozen=True, slots=True)
class Contribution:
    cid: str
    created: bool


@dataclass(frozen=True, slots=True)
class Standing:
    """What curation says about one fact at query time."""

    #: The contributor's reputation in [0, 1] (``Reputation.of``).
    reputation: float
    endorsements: int
    disputes: int
    #: Disputes by attesters this node trusts (reputation > 0).
    trusted_disputes: int
    #: The factor the reputation ranking multiplies the fact's rank score by.
    weight: float

    @property
    def disputed(self) -> bool:
        return self.trusted_disputes > 0


@dataclass(frozen=True, slots=True)
class ScoredFact:
    fact: StoredFact
    score: float
    #: Block number of the fact's anchor; None while pending.
    anchored_block: int | None = None
    #: Dense cosine of the query and the fact (``node.search``); None without a query vector.
    relevance: float | None = None
    #: What checks the hit offline, when the query asked for proofs (``node.proofs``).
    proof: HitProof | None = None
    #: The contributor's reputation and the fact's attestations (``node.curation``).
    standing: Standing | None = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    results: list[ScoredFact]
    context: str
    #: The threshold the context was cut at.
    min_relevance: float
    embed_ms: float
    search_ms: float


@dataclass(frozen=True, slots=True)
class NodeStatus:
    version: str
    facts: int
    index_kind: str
    index_size: int
    model: str
    dimension: int
    #: The model CID (``node.model_identity``) and the precision it names.
    model_cid: str
    model_precision: str
    data_dir: str
    content_store: str
    publication_backlog: int
    content_store_error: str | None
    operator: str
    require_signatures: bool
    chain: ChainStatus | None
    network: NetworkStatus | None
    ingest: IngestStatus
    integrity: IntegrityReport
    revocations: RevocationCounts
    #: Facts this node's operator hides (``node.moderation``).
    hidden: int
    #: Facts left out of search as near-duplicates (``index.sqlite_duplicates``).
    duplicates: int = 0
    collections: CollectionsStatus | None = None

    def not_ready(self) -> list[str]:
        """Why the node cannot take writes now (empty: ready). Liveness is separate."""
        reasons = []
        if self.ingest.write_error is not None:
            reasons.append(f"writes are failing: {self.ingest.write_error}")
        if self.ingest.full:
            reasons.append(f"the ingest queue is full ({self.ingest.pending} texts waiting)")
        net = self.network
        if net is not None and not net.running:
            reasons.append(f"the network layer is down: {net.error or 'unknown error'}")
        elif net is not None and net.bootstrap_peers and not net.connected_peers:
            reasons.append(
                f"no peer connected ({net.bootstrap_peers} bootstrap peers configured): "
                "gossip and catch-up sync are cut off"
            )
        return reasons


@dataclass(frozen=True, slots=True)
class RevocationCounts:
    #: Tombstones stored (kept forever; they are what makes a revocation stick).
    tombstones: int
    #: Facts erased here by a tombstone since the node started.
    erased: int
    #: Blocks of erased facts still waiting to leave the content store.
    purge_pending: int
    #: Blocks the content store would not delete (logged at ERROR): e.g. a Kubo daemon keeps a
    #: block that a recursively pinned manifest references.
    purge_failed: int = 0


@dataclass(frozen=True, slots=True)
class IngestStatus:
    #: Texts admitted and waiting to be embedded (REST, CAR, gossip, sync).
    pending: int
    #: The bound beyond which writes get 503 + Retry-After.
    bound: int
    queries_waiting: int
    #: Facts from peers left to catch-up sync because the queue was full.
    deferred_to_sync: int
    texts_per_second: float
    #: The next write would be refused with 503 (count or time bound reached).
    full: bool
    #: The last storage error of a write, until a write succeeds again.
    write_error: str | None
    #: Gossiped records left to sync because their contributor was over quota
    #: (``node.quotas``; also in ``deferred_to_sync``).
    over_quota: int = 0
    #: Facts from elsewhere (gossip, sync, CAR, chain) dropped before embedding: their
    #: collection is not held here (``node.collections``).
    other_collections: int = 0


@dataclass(frozen=True, slots=True)
class CollectionsStatus:
    #: ``"*"`` (all) or the names of the collections this node holds.
    held: str | list[str]
    #: Stored facts per collection.
    facts: dict[str, int]


@dataclass(frozen=True, slots=True)
class ChainStatus:
    rpc_url: str
    chain_id: int | None
    registry: str
    account: str
    queued: int
    open_batches: int
    last_anchored_block: int | None
    error: str | None
    follow_block: int | None
    verified_batches: int
    facts_from_chain: int
    follow_error: str | None


@dataclass(frozen=True, slots=True)
class ProvenanceView:
    provenance: Provenance
    signature_valid: bool


@dataclass(frozen=True, slots=True)
class CarImport:
    roots: list[str]
    facts: int
    created: int
    existing: int
    #: Records the node's rules refused (a fact its contributor revoked): left out.
    refused: int = 0
