"""What the node's use cases answer: contributions, ranked facts, provenance views, status.

Plain frozen records, built by ``node.service`` and its helpers and turned into wire schemas at
the edge (``api.schemas``, ``api.views``); nothing here does work beyond deciding readiness
from a status (``NodeStatus.not_ready``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    #: The peer that answered with this hit (a network query, ``node.federation``); None: here.
    source: str | None = None
    #: A remote hit's proof as the peer sent it (checked before merging), in the
    #: ``node.proofs.hit_proof_json`` form; local hits carry ``proof`` instead.
    remote_proof: Mapping[str, Any] | None = None
    #: A remote hit's verdict here (``node.proofs.Verdict``: verified or pending).
    verdict: str | None = None


class PeerOutcome(enum.StrEnum):
    ANSWERED = "answered"
    #: No answer within the query's time budget.
    TIMEOUT = "timeout"
    #: Could not be reached (no stream, connection lost).
    UNREACHABLE = "unreachable"
    #: Answered with an error (busy, model mismatch, not held, invalid request).
    REFUSED = "refused"
    #: Answered with a malformed answer or hits that failed verification: penalised.
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class PeerReport:
    peer_id: str
    collections: tuple[str, ...]
    outcome: PeerOutcome
    #: Hits merged-eligible (passed every check) and hits dropped by the checks.
    hits: int = 0
    rejected: int = 0
    ms: float = 0.0
    reason: str | None = None
    #: The asked collections the peer says it searched (answered peers).
    searched: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Completeness:
    """Which collections a network query covered, and how."""

    #: Every wanted collection was searched (here or by a peer that answered).
    complete: bool
    local: tuple[str, ...]
    remote: tuple[str, ...]
    #: Wanted collections nobody searched: no reachable holder with this node's model, or
    #: every holder asked timed out, refused or failed verification.
    missing: tuple[str, ...]
    peers: tuple[PeerReport, ...] = ()
    #: Why each missing collection is missing.
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueryResult:
    results: list[ScoredFact]
    context: str
    #: The threshold the context was cut at.
    min_relevance: float
    embed_ms: float
    search_ms: float
    #: What a network query covered (``node.federation``); None for a local query.
    completeness: Completeness | None = None


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
