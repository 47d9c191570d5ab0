"""Ports of the search side: the embedder and the two rebuildable indexes (vectors, keyword),
as Protocols. Re-exported by ``node.ports``; implemented by ``index`` and ``node.memory``.

The indexes are caches of the catalog keyed by its row ids, reconciled with it at every start;
their methods are synchronous (CPU-bound): the service calls them from worker threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from node.keyword_stats import DocTerms, QueryTerms, TermStats
from node.search import Hit

Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors (inner product = cosine similarity)."""

    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Shape ``(len(texts), dimension)``; blocking, call it off the event loop."""
        ...


@runtime_checkable
class Preemptible(Protocol):
    """An embedder whose forward pass can pause: it calls the yield point between its steps
    (a real model: before every transformer layer). The embedding scheduler pauses an ingest
    pass there while a query is embedded by another instance, so a query waits one layer, not
    one pass."""

    def set_yield_point(self, yield_point: Callable[[], None] | None) -> None: ...


class VectorIndex(Protocol):
    """Nearest-neighbour search by inner product over catalog row ids."""

    @property
    def kind(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def __len__(self) -> int: ...

    def add(self, ids: Ids, vectors: Vectors) -> None: ...

    def remove(self, ids: Ids) -> None: ...

    def search(
        self,
        vector: Vectors,
        k: int,
        allowed: Ids | None = None,
        excluded: Ids | None = None,
        *,
        exact: bool = True,
        ef: int | None = None,
    ) -> list[Hit]:
        """Top ``k`` by inner product, (score desc, id asc); with ``allowed``, only among
        those ids; with ``excluded``, never those ids.

        Restriction happens inside the search, never by trimming ranked results.
        ``exact=False``: an index that keeps compressed vectors may rank and score by them
        (within its quantization error) instead of re-ranking with the float vectors; for a
        ranking whose scores only become ranks (hybrid fusion). ``similarity`` stays exact.
        ``ef``: an approximate index's search breadth for this call instead of its own
        setting (it never searches narrower than ``k``); an exact index ignores it.
        """
        ...

    def similarity(self, vector: Vectors, ids: Ids) -> Vectors:
        """Inner product of ``vector`` with the stored vector of each of ``ids``, in order
        (NaN for an id the index does not hold): the dense relevance of any hit, whichever
        ranker found it."""
        ...

    def ids(self) -> Ids: ...

    def save(self) -> None:
        """Persist durably (atomic replace); a no-op for in-memory indexes."""
        ...


class KeywordIndex(Protocol):
    """Top-k BM25 ranking of catalog row ids by their texts: like ``VectorIndex``, a
    rebuildable cache of the catalog, reconciled with it at every start."""

    def __len__(self) -> int: ...

    def add(self, ids: Ids, texts: Sequence[str]) -> None:
        """Index ``texts`` under ``ids`` (an id already held is replaced)."""
        ...

    def remove(self, ids: Ids) -> int:
        """Forget ``ids`` (unknown ones are ignored); how many were held."""
        ...

    def search(
        self, text: str, k: int, allowed: Ids | None = None, excluded: Ids | None = None
    ) -> list[Hit]:
        """Top ``k`` by BM25 (score descending, then id), restricted inside the search like
        ``VectorIndex.search``; no hit for a text without a searchable term."""
        ...

    def query_terms(self, text: str) -> QueryTerms:
        """The terms of query ``text`` with their weights, in order, as ``search`` scores
        them (empty: no searchable term)."""
        ...

    def term_stats(self, terms: Sequence[str], allowed: Ids | None = None) -> TermStats:
        """Statistics of the held documents among ``allowed`` (all when None): how many,
        their total token count, and for each of ``terms`` how many hold it. With ``allowed``
        None they are the ones ``search`` scores with."""
        ...

    def doc_terms(self, terms: Sequence[str], ids: Ids) -> list[DocTerms | None]:
        """Each document's token count and frequency of each of ``terms``, for ``ids`` in
        order; None for an id not held."""
        ...

    def text_terms(self, terms: Sequence[str], texts: Sequence[str]) -> list[DocTerms]:
        """The same for texts, held or not, tokenized as documents are: a held document's
        text gives what ``doc_terms`` gives its id."""
        ...

    def ids(self) -> Ids: ...

    def save(self) -> None:
        """Persist durably (atomic replace); a no-op for in-memory indexes."""
        ...
