"""Ports: what the node needs from the outside world, as Protocols. The chain's, the
network's and the search indexes' (embedder, vector and keyword index) live in
``node.chain_ports``, ``node.network_ports`` and ``node.index_ports`` and are re-exported here.

Implementations name their technology (``index.faiss_index.FaissIndex``); in-package fakes
are named ``Memory*``/``Hash*`` (``node.memory``). The adapters here are local and CPU- or
disk-bound, so their methods are synchronous; the service calls them from worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from node.chain_ports import AnchorEvent as AnchorEvent
from node.chain_ports import Ledger as Ledger
from node.chain_ports import MinedTx as MinedTx
from node.chain_ports import OnChainAnchor as OnChainAnchor
from node.chain_ports import SignedTx as SignedTx
from node.facts import DEFAULT_COLLECTION, Fact, record_map
from node.filters import MetadataFilter
from node.index_ports import Embedder as Embedder
from node.index_ports import Ids as Ids
from node.index_ports import KeywordIndex as KeywordIndex
from node.index_ports import Preemptible as Preemptible
from node.index_ports import VectorIndex as VectorIndex
from node.index_ports import Vectors as Vectors
from node.network_ports import CollectionAdvert as CollectionAdvert
from node.network_ports import DirectoryEntry as DirectoryEntry
from node.network_ports import FetchAnswer as FetchAnswer
from node.network_ports import FetchQuery as FetchQuery
from node.network_ports import Network as Network
from node.network_ports import NetworkStatus as NetworkStatus
from node.network_ports import PeerAnswer as PeerAnswer
from node.network_ports import PeerFetcher as PeerFetcher
from node.network_ports import PeerRequest as PeerRequest
from node.network_ports import PeerStatus as PeerStatus
from node.network_ports import PoolEntry as PoolEntry
from node.network_ports import PoolsAnswer as PoolsAnswer
from node.network_ports import PoolsQuery as PoolsQuery
from node.network_ports import RecordSink as RecordSink
from node.network_ports import RemoteAnswer as RemoteAnswer
from node.network_ports import RemoteHit as RemoteHit
from node.network_ports import RemoteQuery as RemoteQuery
from node.provenance import Batch, BatchStatus, Provenance
from node.records import SignedRecord


@dataclass(frozen=True, slots=True)
class StoredFact:
    """A fact as the catalog holds it."""

    id: int
    cid: str
    text: str
    metadata: dict[str, Any]
    contributor: str | None
    stored_at: float
    signature: str | None = None
    #: The earlier fact this one corrects (a version-2 record), if any.
    supersedes: str | None = None
    #: The stored newer version by the same contributor that replaces this fact, if any.
    superseded_by: str | None = None
    #: The stored fact this one repeats (``DuplicateBook``; set by ``get`` only).
    duplicate_of: str | None = None
    #: The collection the fact belongs to (``node.facts``).
    collection: str = DEFAULT_COLLECTION

    def record(self) -> dict[str, Any]:
        return record_map(
            self.text, self.metadata, self.contributor, self.supersedes, self.collection
        )


@dataclass(frozen=True, slots=True)
class NewFact:
    fact: Fact
    vector: Vectors = field(repr=False)
    signature: str | None = None
    #: Queue the fact for anchoring by this node (facts from peers are anchored by their
    #: origin; the chain follower adopts those anchors).
    anchor: bool = True
    #: The catalog row of a stored fact this one nearly repeats (same contributor, embedding
    #: above ``node.ingest.NEAR_DUPLICATE_COSINE``): linked to it and left out of search.
    duplicate_of: int | None = None


class FactRecords(Protocol):
    """The catalog's facts: stored durably with their vectors, read back by CID or row id."""

    def insert(self, facts: Sequence[NewFact]) -> list[tuple[int, bool]]:
        """Store durably in one transaction; per fact ``(row id, created)``, in order."""
        ...

    def existing(self, cids: Sequence[str]) -> dict[str, int]: ...

    def get(self, cid: str) -> StoredFact | None: ...

    def get_by_ids(self, ids: Sequence[int]) -> dict[int, StoredFact]: ...

    def ids(self) -> Ids:
        """Row ids of the facts that are searchable (stored and not hidden): what the vector
        index holds."""
        ...

    def all_ids(self) -> Ids:
        """Row ids of every stored fact, hidden ones included."""
        ...

    def vectors(self, ids: Ids) -> Vectors: ...

    def texts(self, ids: Ids) -> list[str]:
        """The texts of ``ids``, in order (``StorageError`` if one is missing)."""
        ...

    def count(self) -> int: ...

    def block(self, cid: str) -> bytes | None:
        """The stored DAG-CBOR block of a signed record of any kind."""
        ...

    def cids(self) -> list[str]:
        """Every fact CID, sorted."""
        ...

    def signed_cids(self, set_name: str | None = None) -> list[str]:
        """CIDs of every signed record: facts that carry a signature, and records of every
        other kind (the set peers reconcile and a snapshot carries); with ``set_name``, only
        that replication set's (``node.collections.set_of``)."""
        ...

    def signed_records(self, cids: Sequence[str]) -> list[tuple[bytes, str]]:
        """(block, signature) of the signed records of any kind among ``cids``."""
        ...


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A signed record of a kind other than fact, as the catalog holds it."""

    cid: str
    kind: str
    #: The CID the record is about (a tombstone: the fact it revokes), if any.
    subject: str | None
    contributor: str | None
    block: bytes
    signature: str
    stored_at: float


class RecordBook(Protocol):
    """Signed records of kinds other than fact (``node.kinds``): stored whole and kept
    forever, found by CID or by the CID they are about. They join the facts in the catalog's
    signed set (``signed_cids``/``signed_records``), the publication queue and anchoring."""

    def put_records(self, records: Sequence[SignedRecord], anchor: bool) -> list[bool]:
        """Store durably in one transaction (queued for anchoring here when ``anchor``);
        per record whether it was new, in order."""
        ...

    def get_record(self, cid: str) -> StoredRecord | None: ...

    def held_records(self, cids: Sequence[str]) -> set[str]:
        """The CIDs among ``cids`` of records of kinds other than fact stored here."""
        ...

    def records_about(self, subjects: Sequence[str], kind: str) -> list[StoredRecord]:
        """Records of ``kind`` whose subject is one of ``subjects``."""
        ...

    def records_of_kind(self, kind: str) -> list[StoredRecord]:
        """Every stored record of ``kind`` (small kinds only: tombstones)."""
        ...

    def record_counts(self) -> dict[str, int]:
        """How many records of each kind are stored."""
        ...


class FactErasure(Protocol):
    """Taking a fact out of the catalog for good (a revocation)."""

    def erase_fact(self, cid: str) -> int | None:
        """Remove the fact, its text, metadata, vector, keyword entry and queue places in one
        transaction, leaving no copy of the text in the catalog's files; its row id (to take
        out of the vector index), or None when the catalog does not have it."""
        ...

    def erased_ids(self) -> Ids:
        """Row ids of the facts erased so far (no content: for the start-up audit)."""
        ...


@dataclass(frozen=True, slots=True)
class HiddenFact:
    cid: str
    reason: str | None
    hidden_at: float


class Moderation(Protocol):
    """Facts this node's operator hides: kept, not served, not searched, not forwarded."""

    def hide(self, cid: str, reason: str | None) -> int | None:
        """Hide a stored fact; its row id (to leave the vector index), or None when it is not
        stored or hidden already."""
        ...

    def unhide(self, cid: str) -> int | None:
        """Serve a hidden fact again; its row id (to rejoin the index), or None."""
        ...

    def hidden_facts(self, limit: int) -> list[HiddenFact]: ...

    def is_hidden(self, cid: str) -> bool: ...

    def hidden_count(self) -> int: ...


class FactSearch(Protocol):
    """The catalog as retrieval sees it: metadata filters, superseded ids, rows by id."""

    def superseded_ids(self) -> Ids:
        """Row ids of the facts a stored newer version by their contributor replaces."""
        ...

    def filter_ids(self, flt: MetadataFilter) -> Ids: ...

    def collection_ids(self, names: Sequence[str]) -> Ids:
        """Row ids of the facts in any of the collections ``names``, ascending."""
        ...

    def collection_counts(self) -> dict[str, int]:
        """Stored facts per collection."""
        ...

    def get_by_ids(self, ids: Sequence[int]) -> dict[int, StoredFact]: ...

    def anchored_blocks(self, ids: Sequence[int]) -> dict[int, int]:
        """Fact id -> anchor block number, for the anchored facts among ``ids``."""
        ...


class PublicationQueue(Protocol):
    """Fact blocks waiting to be written to the content store."""

    def pending_publication(self, limit: int) -> list[tuple[str, bytes]]:
        """Fact blocks not yet written to the content store: (cid, block), oldest first."""
        ...

    def mark_published(self, cids: Sequence[str]) -> None: ...

    def publication_backlog(self) -> int: ...


class AnchorBook(Protocol):
    """Records (facts and other kinds) waiting for an anchor batch, the batches, and each
    record's provenance."""

    def anchor_backlog(self) -> tuple[int, float | None]:
        """Facts waiting for a batch, and the Unix time the oldest was queued."""
        ...

    def queued_for_anchor(self, limit: int) -> list[tuple[str, str, str | None]]:
        """(CID, kind, collection) of records of any kind waiting for a batch, oldest first;
        the collection of a fact (``default`` included), None for other kinds."""
        ...

    def seal_batch(self, root: bytes, manifest_cid: str, proofs: dict[str, list[bytes]]) -> Batch:
        """Create a batch of the records in ``proofs`` (cid -> Merkle proof), facts or other
        kinds, and take them off the queue, in one transaction."""
        ...

    def batches(self, statuses: Sequence[BatchStatus]) -> list[Batch]: ...

    def adopt_batch(self, batch: Batch, proofs: dict[str, list[bytes]]) -> int:
        """Record a batch anchored by someone else (already checked against the chain) as the
        provenance of the listed facts that have none yet, and take them off the anchoring
        queue; return how many facts adopted it. A root already known is left alone."""
        ...

    def save_batch(self, batch: Batch) -> None: ...

    def batch_cids(self, batch_id: int) -> list[tuple[str, str]]:
        """(CID, kind) of every record in a batch, by CID."""
        ...

    def provenance(self, cid: str) -> Provenance | None: ...

    def anchored_blocks(self, ids: Sequence[int]) -> dict[int, int]:
        """Fact id -> anchor block number, for the anchored facts among ``ids``."""
        ...


class CatalogSettings(Protocol):
    """Small persistent values (the model a data dir was built with, follower progress)."""

    def get_setting(self, key: str) -> str | None: ...

    def set_setting(self, key: str, value: str) -> None: ...


class FactRef(NamedTuple):
    """A fact's CID and contributor: what curation needs to weigh a hit."""

    cid: str
    contributor: str | None


class ContributorBook(Protocol):
    """Whose facts are whose (``node.curation``)."""

    def fact_refs(self, ids: Sequence[int]) -> dict[int, FactRef]:
        """Row id -> CID and contributor, for the ids the catalog holds (a narrow read: no
        text, metadata or vector)."""
        ...

    def contributors_of(self, cids: Sequence[str]) -> dict[str, str | None]:
        """CID -> contributor for the facts among ``cids`` the catalog holds (None for an
        unsigned fact) or erased by their contributor's tombstone; unknown CIDs left out."""
        ...

    def facts_by(self, contributor: str) -> int:
        """How many facts of ``contributor`` the catalog holds."""
        ...


class DuplicateBook(Protocol):
    """Facts that repeat a stored fact: kept, linked, left out of search
    (``index.sqlite_duplicates``)."""

    def duplicates_among(self, ids: Sequence[int]) -> set[int]:
        """The row ids among ``ids`` that are linked duplicates."""
        ...

    def duplicate_of(self, cid: str) -> str | None:
        """The CID of the fact ``cid`` repeats, if it is a duplicate."""
        ...

    def duplicate_count(self) -> int: ...


class Catalog(
    FactRecords,
    RecordBook,
    ContributorBook,
    DuplicateBook,
    FactErasure,
    Moderation,
    FactSearch,
    PublicationQueue,
    AnchorBook,
    CatalogSettings,
    Protocol,
):
    """The source of truth: every acknowledged fact, its vector, metadata and keyword index,
    its publication and anchoring state. One adapter (``index.sqlite_catalog``) plays every
    role; each use case is typed with the roles it needs."""

    def close(self) -> None: ...


class ContentStore(Protocol):
    """IPFS blocks by CID: the embedded blockstore or a Kubo daemon. Async: it may be remote.

    ``put`` refuses a block whose hash does not match its CID; ``get`` verifies what it returns
    (``NotFound`` when absent, ``StorageError`` when corrupt); ``Unavailable`` when a daemon
    cannot be reached.
    """

    @property
    def kind(self) -> str: ...

    async def put(self, cid: str, data: bytes) -> None: ...

    async def get(self, cid: str) -> bytes: ...

    async def has(self, cid: str) -> bool: ...

    async def pin(self, cid: str) -> None: ...

    async def put_many(self, blocks: Sequence[tuple[str, bytes]]) -> None:
        """Store and pin every ``(cid, block)``; each is checked against its CID first, and
        one that fails raises ``InvalidInput`` before any is stored. The publisher's path:
        the embedded store writes a batch in one transaction."""
        ...

    async def delete(self, cid: str) -> None:
        """Unpin and remove a block (a revoked fact's); absent blocks are not an error."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class BlockInventory(Protocol):
    """A content store that can list what it holds (the embedded blockstore and its fake; a
    remote Kubo cannot, cheaply). Used at start to recover facts a damaged catalog lost."""

    def list_cids(self) -> list[str]:
        """Every stored block's canonical CID string (blocking: call it off the loop)."""
        ...
