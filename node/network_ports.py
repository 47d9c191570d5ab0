"""Ports to the peer-to-peer network: what the node asks of it (``Network``), what it gives it
(``RecordSink``) and the status it reports. Re-exported by ``node.ports``; implemented by
``p2p`` and ``node.memory_network``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from node.chain_ports import AnchorEvent
from node.collections import Collections
from node.filters import MetadataFilter
from node.keyword_stats import DocTerms, QueryTerms, TermStats
from node.origin import Origin
from node.records import SignedRecord
from node.search import SearchMode


@dataclass(frozen=True, slots=True)
class PeerStatus:
    peer_id: str
    addresses: list[str]
    connected_since: float | None
    facts_received: int
    rejected_messages: int
    #: Offences within the offence window (a ban follows at the limit).
    recent_offences: int = 0
    banned: bool = False
    #: Bootstrap, operator-connected or recently useful: dialled, never trimmed.
    trusted: bool = False
    #: Gossipsub score as this node sees it (None when gossip is not running).
    score: float | None = None


@dataclass(frozen=True, slots=True)
class NetworkStatus:
    peer_id: str
    listen_addresses: list[str]
    connected_peers: int
    facts_published: int
    facts_received: int
    messages_rejected: int
    #: Gossip messages (fact envelopes and anchor notices) that passed validation.
    messages_accepted: int
    syncs: int
    last_sync_error: str | None
    #: Fingerprint of the set of signed fact CIDs (p2p.reconcile): equal sets, equal digests.
    fact_set_digest: str
    signed_facts: int
    anchor_notices: int
    #: The libp2p host is up and accepting connections.
    running: bool = True
    #: Why it is not, while it is not (it restarts with backoff).
    error: str | None = None
    #: Bootstrap peers configured: with some, no connected peer means cut off.
    bootstrap_peers: int = 0
    #: Gossip messages and sync requests refused unread (banned peer, or untrusted on a
    #: penalised address).
    messages_refused: int = 0
    #: Inbound connections refused by the per-address or total cap.
    connections_refused: int = 0
    #: Facts from gossip dropped because the inbox was full (sync fetches them later).
    inbox_dropped: int = 0
    banned_peers: int = 0
    #: Connected peers by gossipsub score band: trusted, positive, negative (below 0, gossip
    #: to them is limited), graylisted (their control messages ignored).
    score_bands: dict[str, int] = field(default_factory=dict)
    #: Peers' federated queries answered, and refused as over a bound (``busy``).
    queries_answered: int = 0
    queries_busy: int = 0
    #: Bytes of federated queries on the wire, both roles (requests and answers, framed).
    query_bytes: int = 0


@dataclass(frozen=True, slots=True)
class CollectionAdvert:
    """One collection as a peer advertises it in the directory."""

    facts: int
    #: ``p2p.reconcile`` digest of that collection's signed fact CIDs: equal sets, equal digests.
    digest: str


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """What a peer says it holds (``p2p.directory``): one entry per advertising peer."""

    peer_id: str
    #: The peer's embedding model (``node.model_identity``): vectors of another model are
    #: never sent to it nor merged with this node's.
    model_cid: str
    #: The peer holds every collection (``*``); ``collections`` then lists those it has facts of.
    holds_all: bool
    collections: dict[str, CollectionAdvert]
    #: Unix time this node received the advert.
    seen_at: float
    #: Connected now (a federated query asks connected peers only).
    connected: bool


@dataclass(frozen=True, slots=True)
class RemoteQuery:
    """What one peer is asked: this node's query vector (unit, this node's model), the text
    for keyword search, and the collections that peer is asked to search."""

    text: str
    vector: tuple[float, ...]
    model_cid: str
    k: int
    mode: SearchMode
    collections: tuple[str, ...]
    filter: MetadataFilter | None = None
    include_superseded: bool = False


@dataclass(frozen=True, slots=True)
class RemoteHit:
    """One hit as a peer states it; ``proof`` is the ``node.proofs.hit_proof_json`` form."""

    cid: str
    score: float
    relevance: float | None
    proof: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RemoteAnswer:
    hits: tuple[RemoteHit, ...]
    #: The asked collections the peer searched (those it holds): the others it did not.
    searched: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PoolsQuery:
    """Phase one of a keyword or hybrid network query (``node.pools``): ``query`` with
    ``query.k`` the depth of each ranker's pool, and the asker's query terms with their
    weights, for which the peer states its statistics and each candidate's frequencies."""

    query: RemoteQuery
    terms: QueryTerms


@dataclass(frozen=True, slots=True)
class PoolEntry:
    """One candidate of a peer's pools, lean (no block, no proof): what ranks it."""

    cid: str
    #: The fact's contributor (checksum address), or None: what curation weighs.
    contributor: str | None
    #: Dense cosine of the fact's stored vector with the query vector.
    relevance: float
    #: Among the peer's dense pool (its best ``k`` by cosine) / keyword pool (by BM25).
    dense: bool
    keyword: bool
    #: Its token count and frequency of each query term (in the query's term order).
    terms: DocTerms


@dataclass(frozen=True, slots=True)
class PoolsAnswer:
    #: The asked collections the peer holds and searched.
    searched: tuple[str, ...]
    #: Keyword statistics of the searched collections for the query terms.
    stats: TermStats
    entries: tuple[PoolEntry, ...]


@dataclass(frozen=True, slots=True)
class FetchQuery:
    """Phase two: the blocks and proofs of the candidates the asker chose (``cids``), among
    the facts of ``collections`` the peer holds."""

    cids: tuple[str, ...]
    collections: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FetchAnswer:
    #: ``(cid, proof)`` of each asked CID the peer holds, the proof in the
    #: ``node.proofs.hit_proof_json`` form.
    proofs: tuple[tuple[str, Mapping[str, Any]], ...]


#: What a peer is asked over the query protocol, and what it answers (by request:
#: ``RemoteQuery`` -> ``RemoteAnswer``, ``PoolsQuery`` -> ``PoolsAnswer``, ``FetchQuery`` ->
#: ``FetchAnswer``).
PeerRequest = RemoteQuery | PoolsQuery | FetchQuery
PeerAnswer = RemoteAnswer | PoolsAnswer | FetchAnswer


class RecordSink(Protocol):
    """What the network needs from the node. ``receive_records`` is a coroutine on the node's
    loop; the other methods are blocking and thread-safe (the network calls them from its
    own threads)."""

    async def receive_records(
        self, records: Sequence[SignedRecord], peer: str, origin: Origin
    ) -> int:
        """Store verified records of any kind from ``peer``, which came by ``origin`` (gossip
        or sync); return how many were new. Records the node's state refuses (a revoked fact
        from a stale peer) are dropped, not counted."""
        ...

    def judge(self, records: Sequence[SignedRecord]) -> str | None:
        """Why these verified records are invalid given what this node knows (a tombstone by
        someone other than the fact's contributor), or None. An answer is the sender's fault:
        the network penalises it like any invalid message. Quick (catalog reads)."""
        ...

    def record_cids(self, set_name: str | None = None) -> list[bytes]:
        """Every signed record's binary CID (what peers reconcile), or only those of the
        replication set ``set_name`` (``node.collections.set_of``)."""
        ...

    def sets(self) -> list[str]:
        """The replication sets this node holds: ``RECORDS_SET`` always, then every held
        collection with stored facts, sorted (``node.collections``)."""
        ...

    def held(self) -> Collections:
        """The collections this node holds (``KNOWHUB_COLLECTIONS``)."""
        ...

    def model_cid(self) -> str:
        """This node's embedding model (``node.model_identity``), for the peer directory."""
        ...

    def set_version(self) -> int:
        """A number that changes whenever the set of ``record_cids`` changes (a cache key)."""
        ...

    def signed_records(self, cids: Sequence[bytes]) -> list[tuple[bytes, str]]:
        """(block, 0x signature) of the signed records among ``cids``."""
        ...

    async def get_block(self, cid: str) -> bytes | None:
        """A block this node stores (fact or manifest), or None."""
        ...

    async def anchor_announced(self, chain_id: int, registry: str) -> None:
        """A peer says it anchored a batch on that chain: look at the chain now."""
        ...

    async def answer_query(self, query: PeerRequest, peer: str) -> PeerAnswer:
        """A peer's federated query (``node.federation``), its pools or its fetch
        (``node.pools``), answered from the collections this node holds among those asked
        (the answer's type follows the request's: see ``PeerRequest``). ``ModelMismatch``,
        ``CollectionNotHeld``, ``Unavailable`` (overloaded) or ``InvalidInput`` when the node
        refuses it."""
        ...


class PeerFetcher(Protocol):
    """What a reader of the chain asks of the network: records and blocks by CID."""

    async def fetch_blocks(self, cids: Sequence[str]) -> dict[str, bytes]: ...

    async def fetch_records(self, cids: Sequence[str]) -> list[SignedRecord]: ...


class Network(Protocol):
    """Gossip and catch-up with peers (libp2p). ``publish`` never blocks or fails: what peers
    miss, the sync protocol brings them later."""

    async def start(self, sink: RecordSink) -> None: ...

    def publish(self, records: Sequence[SignedRecord]) -> None: ...

    def announce_anchor(self, chain_id: int, registry: str, event: AnchorEvent) -> None:
        """Tell peers a batch was anchored (a hint; they check the chain)."""
        ...

    def peers(self) -> list[PeerStatus]: ...

    def directory(self) -> list[DirectoryEntry]:
        """What peers advertise they hold (``p2p.directory``), freshest first."""
        ...

    def status(self) -> NetworkStatus:
        """Blocking (may hash the CID set): call it from a worker thread."""
        ...

    async def connect(self, address: str) -> str:
        """Dial a multiaddr with /p2p/ (lifting a block on that peer); its peer id."""
        ...

    async def disconnect(self, peer_id: str, block_seconds: float) -> None:
        """Hang up on a peer and refuse it for ``block_seconds``."""
        ...

    async def fetch_blocks(self, cids: Sequence[str]) -> dict[str, bytes]:
        """Blocks (e.g. manifests) from connected peers, each checked against its CID."""
        ...

    async def fetch_records(self, cids: Sequence[str]) -> list[SignedRecord]:
        """Signed records from connected peers, each verified; those no peer had are absent."""
        ...

    async def ask(self, peer_id: str, query: PeerRequest, budget: float) -> PeerAnswer:
        """``peer_id``'s answer to a federated query, pools or fetch within ``budget``
        seconds (of the type ``PeerRequest`` pairs with the request's).
        ``PeerUnavailable`` (unreachable, or ``timeout``), ``PeerRefused`` (it answered an
        error), ``InvalidAnswer`` (malformed: counted as the peer's offence already)."""
        ...

    def penalise(self, peer_id: str, reason: str) -> None:
        """Count an offence against a peer (e.g. a hit that failed verification)."""
        ...

    async def close(self) -> None: ...
