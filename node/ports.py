"""Ports: what the node needs from the outside world, as Protocols.

Implementations name their technology (``index.faiss_index.FaissIndex``); in-package fakes
are named ``Memory*``/``Hash*`` (``node.memory``). The adapters here are local and CPU- or
disk-bound, so their methods are synchronous; the service calls them from worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from node.facts import Fact
from node.filters import MetadataFilter
from node.search import Hit

Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class StoredFact:
    """A fact as the catalog holds it."""

    id: int
    cid: str
    text: str
    metadata: dict[str, Any]
    contributor: str | None
    stored_at: float

    def record(self) -> dict[str, Any]:
        return {
            "v": 1,
            "text": self.text,
            "metadata": self.metadata,
            "contributor": self.contributor,
        }


@dataclass(frozen=True, slots=True)
class NewFact:
    fact: Fact
    vector: Vectors = field(repr=False)


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors (inner product = cosine similarity)."""

    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Shape ``(len(texts), dimension)``; blocking, call it off the event loop."""
        ...


class VectorIndex(Protocol):
    """Nearest-neighbour search by inner product over catalog row ids."""

    @property
    def kind(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def __len__(self) -> int: ...

    def add(self, ids: Ids, vectors: Vectors) -> None: ...

    def remove(self, ids: Ids) -> None: ...

    def search(self, vector: Vectors, k: int, allowed: Ids | None = None) -> list[Hit]:
        """Top ``k`` by inner product; with ``allowed``, only among those ids.

        Restriction happens inside the search, never by trimming ranked results.
        """
        ...

    def ids(self) -> Ids: ...

    def save(self) -> None:
        """Persist durably (atomic replace); a no-op for in-memory indexes."""
        ...


class Catalog(Protocol):
    """The source of truth: every acknowledged fact, its vector, metadata and keyword index."""

    def insert(self, facts: Sequence[NewFact]) -> list[tuple[int, bool]]:
        """Store durably in one transaction; per fact ``(row id, created)``, in order."""
        ...

    def existing(self, cids: Sequence[str]) -> dict[str, int]: ...

    def get(self, cid: str) -> StoredFact | None: ...

    def get_by_ids(self, ids: Sequence[int]) -> dict[int, StoredFact]: ...

    def keyword_search(
        self, text: str, limit: int, flt: MetadataFilter | None = None
    ) -> list[Hit]: ...

    def filter_ids(self, flt: MetadataFilter) -> Ids: ...

    def ids(self) -> Ids: ...

    def vectors(self, ids: Ids) -> Vectors: ...

    def count(self) -> int: ...

    def block(self, cid: str) -> bytes | None:
        """The stored DAG-CBOR block of a fact."""
        ...

    def cids(self) -> list[str]:
        """Every fact CID, sorted."""
        ...

    def pending_publication(self, limit: int) -> list[tuple[str, bytes]]:
        """Fact blocks not yet written to the content store: (cid, block), oldest first."""
        ...

    def mark_published(self, cids: Sequence[str]) -> None: ...

    def publication_backlog(self) -> int: ...

    def get_setting(self, key: str) -> str | None: ...

    def set_setting(self, key: str, value: str) -> None: ...

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

    async def close(self) -> None: ...
