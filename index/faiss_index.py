"""FAISS vector index keyed by catalog row id, persisted atomically to the data directory.

Small collections use exact search (``IndexFlatIP``); past ``hnsw_threshold`` vectors the
index is rebuilt once as HNSW (M=32, efSearch 192 by default: recall@10 >= 0.95). Both sit
in an ``IndexIDMap2`` so ids are the catalog's and vectors can be reconstructed.

Deletion: the flat index removes ids outright. HNSW cannot, so removed ids become
tombstones excluded by an ID selector at search time, and the graph is rebuilt without them
once they exceed a fifth of it.

Filtered search never post-filters: the allowed ids go into the search as a selector. For
HNSW, a filter matching at most ``exact_filter_limit`` ids is answered by brute force over
exactly those vectors, because a graph walk restricted to a small subset loses recall.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np

from index.durable import fsync_dir
from node.errors import StorageError
from node.ports import Ids, Vectors
from node.search import Hit

log = logging.getLogger(__name__)

#: faiss ships partial type stubs that miss most of the SWIG API; treat it as untyped.
faiss: Any = _faiss

FLAT = "flat"
HNSW = "hnsw"
TOMBSTONE_REBUILD_FRACTION = 0.2


class FaissIndex:
    def __init__(
        self,
        dimension: int,
        path: Path | None = None,
        *,
        hnsw_threshold: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 192,
        exact_filter_limit: int = 20_000,
    ) -> None:
        self._dimension = dimension
        self._path = path
        self._hnsw_threshold = hnsw_threshold
        self._hnsw_m = hnsw_m
        self._ef_construction = ef_construction
        self._ef_search = ef_search
        self._exact_filter_limit = exact_filter_limit
        self._lock = threading.RLock()
        self._tombstones: set[int] = set()
        self._index: Any = self._load() if path is not None and path.exists() else self._new_flat()

    # -- construction ------------------------------------------------------------------------

    def _new_flat(self) -> Any:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self._dimension))

    def _new_hnsw(self) -> Any:
        graph = faiss.IndexHNSWFlat(self._dimension, self._hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self._ef_construction
        graph.hnsw.efSearch = self._ef_search
        return faiss.IndexIDMap2(graph)

    def _load(self) -> Any:
        assert self._path is not None
        try:
            index = faiss.read_index(str(self._path))
        except RuntimeError as exc:
            log.warning(
                "index file %s unreadable (%s); rebuilding from the catalog", self._path, exc
            )
            return self._new_flat()
        if not isinstance(index, faiss.IndexIDMap2) or index.d != self._dimension:
            log.warning(
                "index file %s has the wrong shape; rebuilding from the catalog", self._path
            )
            return self._new_flat()
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexHNSWFlat):
            inner.hnsw.efSearch = self._ef_search
        return index

    def _inner(self) -> Any:
        return faiss.downcast_index(self._index.index)

    # -- VectorIndex -------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return HNSW if isinstance(self._inner(), faiss.IndexHNSWFlat) else FLAT

    @property
    def dimension(self) -> int:
        return self._dimension

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._tombstones)

    def add(self, ids: Ids, vectors: Vectors) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self._dimension):
            raise StorageError(
                f"expected {len(ids)} vectors of {self._dimension} dims, got shape {vectors.shape}"
            )
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock:
            revived = self._tombstones.intersection(ids.tolist())
            if revived:  # re-adding a tombstoned id: drop the old vector first
                self._rebuild(exclude=set(self._tombstones))
            self._index.add_with_ids(vectors, ids)
            if self.kind == FLAT and self._index.ntotal > self._hnsw_threshold:
                self._rebuild(exclude=set(), kind=HNSW)

    def remove(self, ids: Ids) -> None:
        with self._lock:
            if self.kind == FLAT:
                self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))
                return
            present = set(faiss.vector_to_array(self._index.id_map).tolist())
            self._tombstones.update(i for i in ids.tolist() if i in present)
            if len(self._tombstones) > TOMBSTONE_REBUILD_FRACTION * self._index.ntotal:
                self._rebuild(exclude=self._tombstones)

    def search(
        self, vector: Vectors, k: int, allowed: Ids | None = None, excluded: Ids | None = None
    ) -> list[Hit]:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self._dimension)
        if excluded is not None and allowed is not None:
            allowed, excluded = np.setdiff1d(allowed, excluded), None
        with self._lock:
            if self._index.ntotal == 0 or (allowed is not None and len(allowed) == 0):
                return []
            hnsw = self.kind == HNSW
            if allowed is not None and hnsw and len(allowed) <= self._exact_filter_limit:
                return self._brute_force(query[0], k, allowed)
            keep: list[Any] = []  # selectors must outlive the search call
            selector = None
            if allowed is not None:
                selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
                keep.append(selector)
            if self._tombstones or (excluded is not None and len(excluded)):
                gone = np.fromiter(self._tombstones, dtype=np.int64)
                if excluded is not None:
                    gone = np.union1d(gone, excluded)
                dead = faiss.IDSelectorBatch(np.ascontiguousarray(gone, dtype=np.int64))
                alive = faiss.IDSelectorNot(dead)
                keep += [dead, alive]
                selector = alive if selector is None else faiss.IDSelectorAnd(selector, alive)
                keep.append(selector)
            if hnsw:
                params = faiss.SearchParametersHNSW(efSearch=max(self._ef_search, k), sel=selector)
            else:
                params = faiss.SearchParameters(sel=selector)
            scores, labels = self._index.search(query, k, params=params)
        return [Hit(int(i), float(s)) for s, i in zip(scores[0], labels[0], strict=True) if i >= 0]

    def similarity(self, vector: Vectors, ids: Ids) -> Vectors:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(self._dimension)
        out = np.full(len(ids), np.nan, dtype=np.float32)
        with self._lock:
            for n, i in enumerate(ids.tolist()):
                if i in self._tombstones:
                    continue
                try:
                    stored = self._index.reconstruct(int(i))
                except RuntimeError:  # not in the id map
                    continue
                out[n] = float(stored @ query)
        return out

    def ids(self) -> Ids:
        with self._lock:
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            if self._tombstones:
                ids = ids[~np.isin(ids, np.fromiter(self._tombstones, dtype=np.int64))]
            return np.sort(ids)

    def save(self) -> None:
        if self._path is None:
            return
        with self._lock:
            if self._tombstones:
                self._rebuild(exclude=self._tombstones)
            tmp = self._path.with_name(self._path.name + ".tmp")
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                faiss.write_index(self._index, str(tmp))
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, self._path)
                fsync_dir(self._path.parent)
            except (OSError, RuntimeError) as exc:
                raise StorageError(f"cannot save the vector index to {self._path}: {exc}") from exc
        log.debug("vector index saved to %s (%d vectors)", self._path, len(self))

    # -- internals ---------------------------------------------------------------------------

    def _brute_force(self, query: Vectors, k: int, allowed: Ids) -> list[Hit]:
        keys = np.ascontiguousarray(allowed, dtype=np.int64)
        present = faiss.vector_to_array(self._index.id_map)
        keys = keys[np.isin(keys, present)]
        if self._tombstones:
            keys = keys[~np.isin(keys, np.fromiter(self._tombstones, dtype=np.int64))]
        if len(keys) == 0:
            return []
        vectors = self._index.reconstruct_batch(keys)
        scores = vectors @ query
        top = np.argpartition(-scores, min(k, len(keys)) - 1)[:k] if len(keys) > k else None
        order = np.arange(len(keys)) if top is None else top
        ranked = sorted(order.tolist(), key=lambda j: (-scores[j], keys[j]))
        return [Hit(int(keys[j]), float(scores[j])) for j in ranked[:k]]

    def _rebuild(self, exclude: set[int], kind: str | None = None) -> None:
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = self._inner().reconstruct_n(0, self._index.ntotal)
        if exclude:
            keep = ~np.isin(ids, np.fromiter(exclude, dtype=np.int64))
            ids, vectors = ids[keep], vectors[keep]
        target = kind or self.kind
        log.info("building %s index over %d vectors", target, len(ids))
        index = self._new_hnsw() if target == HNSW else self._new_flat()
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vectors), ids)
        self._index = index
        self._tombstones = set()
