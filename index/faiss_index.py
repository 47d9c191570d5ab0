"""FAISS vector index keyed by catalog row id, persisted atomically to the data directory.

Small collections use exact search (``IndexFlatIP``); past ``hnsw_threshold`` vectors the
index is rebuilt once as HNSW (M=32, efSearch 192 by default: recall@10 >= 0.95). Both sit
in an ``IndexIDMap2`` so ids are the catalog's and vectors can be reconstructed.

Compression (``compression="sq8"``): the HNSW graph then keeps each vector as 8-bit scalar
codes (384 bytes instead of 1536 for all-MiniLM-L6-v2), the measured way to hold a million
facts in RAM (BENCHMARKS.md). The codes only steer the graph walk: the ``k + rerank_margin``
best candidates are re-scored exactly against the float vectors that the catalog keeps
(``exact_vectors``, a constructor argument), so scores and ``similarity`` are exact and the
order is the float order; unless a search asks for ``exact=False`` (a hybrid query's dense pool,
whose scores only become ranks): then the best ``k`` by their codes, no float read. With
``float_file`` those floats are read first from a flat file of
fixed-width records (``index.vector_file``: one ``pread`` per vector instead of a catalog row),
written as ids are added, read through from the catalog where it lacks one, and fsynced before
each save of the index. A rebuild reads the float vectors from there too, never the codes,
so compaction does not accumulate quantization error. The flat index stays float.

Deletion: the flat index removes ids outright. HNSW cannot, so removed ids become
tombstones excluded by an ID selector at search time, and the graph is rebuilt without them
once they exceed a fifth of it.

Concurrency: searches read under one lock; writers (add, remove, a rebuild) hold it too, and
a save holds only the writers' lock while it serialises the index, so searches go on during a
save and writers wait for it.

Filtered search never post-filters: the allowed ids go into the search as a selector. For
HNSW, a filter matching at most ``exact_filter_limit`` ids is answered by brute force over
exactly those vectors, because a graph walk restricted to a small subset loses recall.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np

from index.durable import fsync_dir
from index.vector_file import FloatVectorFile
from node.errors import StorageError
from node.ports import Ids, Vectors
from node.search import Hit

log = logging.getLogger(__name__)

#: faiss ships partial type stubs that miss most of the SWIG API; treat it as untyped.
faiss: Any = _faiss

FLAT = "flat"
HNSW = "hnsw"
HNSW_SQ8 = "hnsw-sq8"
COMPRESSIONS = ("none", "sq8")
TOMBSTONE_REBUILD_FRACTION = 0.2
#: Per-dimension quantizer range: the training min/max widened by this share of the span, so
#: later vectors slightly outside the first sample are not clipped.
SQ_RANGE_MARGIN = 0.05
#: Vectors trained on / read back per step when a compressed graph is (re)built.
TRAIN_SAMPLE = 100_000
REBUILD_CHUNK = 50_000

ExactVectors = Callable[[Ids], Vectors]


def _search_alone(index: Any, query: Vectors, wanted: int, params: Any) -> Any:
    """``index.search`` of one query on the calling thread alone. FAISS runs even a single
    query's search in an OpenMP team, whose other threads then spin-wait on the other cores
    for the next parallel region: on 2 cores an HNSW search of the 100k index took the same
    wall time with one thread (0.38 ms) and half the CPU (0.76 -> 0.38 ms), a flat search of
    20k vectors 0.94 instead of 1.23 ms; in the node the spinning thread took the core from
    the event loop and the other search threads (BENCHMARKS.md, "Query latency"). OpenMP's
    thread count is a per-thread setting: it is restored, so ingest's batch adds keep theirs."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(query, wanted, params=params)
    finally:
        faiss.omp_set_num_threads(before)


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
        compression: str = "none",
        exact_vectors: ExactVectors | None = None,
        rerank_margin: int = 32,
        float_file: Path | None = None,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, not {compression!r}")
        if compression != "none" and exact_vectors is None:
            raise ValueError("a compressed index needs exact_vectors to re-rank and rebuild")
        self._compression = compression
        self._exact = exact_vectors
        self._floats: FloatVectorFile | None = None
        if float_file is not None and compression != "none":
            self._floats = FloatVectorFile(float_file, dimension)
        elif float_file is not None:  # not kept up to date from now on: it must not linger
            try:
                float_file.unlink(missing_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot remove the unused {float_file}: {exc}") from exc
        self._rerank_margin = rerank_margin
        self._dimension = dimension
        self._path = path
        self._hnsw_threshold = hnsw_threshold
        self._hnsw_m = hnsw_m
        self._ef_construction = ef_construction
        self._ef_search = ef_search
        self._exact_filter_limit = exact_filter_limit
        self._lock = threading.RLock()
        #: Held by every writer of the index (add, remove) around ``_lock``, and by a save for
        #: its whole length: a save serialises the index while searches go on (both only read
        #: it; at 1M the write takes ~1.7 s) and writers wait. Order: ``_writers`` first.
        self._writers = threading.Lock()
        #: Per thread: the float vectors of the last re-rank, with the change count they were
        #: read at (``_exact_similarity``); every add and remove counts a change.
        self._recent = threading.local()
        self._changes = 0
        self._tombstones: set[int] = set()
        #: The selector of the ids searches leave out (tombstones and the caller's excluded
        #: ids), with what it was built from; built again only when one of them changes, not
        #: hashed anew per search (``_gone_selector``).
        self._gone: tuple[int, int, Ids | None, Any] | None = None
        self._graph = self._compressed = False
        self._use(self._load() if path is not None and path.exists() else self._new_flat())
        if self._is_graph() and self._is_compressed() != (compression != "none"):
            log.warning(
                "the vector index on disk is %s, not %s: rebuilding", self.kind, compression
            )
            self._rebuild(exclude=set(), kind=HNSW)

    # -- construction ------------------------------------------------------------------------

    def _new_flat(self) -> Any:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self._dimension))

    def _new_hnsw(self) -> Any:
        if self._compression == "sq8":
            graph = faiss.IndexHNSWSQ(
                self._dimension,
                faiss.ScalarQuantizer.QT_8bit,
                self._hnsw_m,
                faiss.METRIC_INNER_PRODUCT,
            )
            codes = faiss.downcast_index(graph.storage)
            codes.sq.rangestat = faiss.ScalarQuantizer.RS_minmax
            codes.sq.rangestat_arg = SQ_RANGE_MARGIN
        else:
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
        if isinstance(inner, faiss.IndexHNSW):  # efSearch is not stored in the file
            inner.hnsw.efSearch = self._ef_search
        return index

    def _use(self, index: Any) -> None:
        """Make ``index`` the live one, noting its layout once: ``downcast_index`` costs
        ~0.2 ms on a graph of a million vectors, too much to ask on every search."""
        inner = faiss.downcast_index(index.index)
        self._graph = isinstance(inner, faiss.IndexHNSW)
        self._compressed = isinstance(inner, faiss.IndexHNSWSQ)
        self._index: Any = index

    def _is_graph(self) -> bool:
        return self._graph

    def _is_compressed(self) -> bool:
        return self._compressed

    # -- VectorIndex -------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        if not self._is_graph():
            return FLAT
        return HNSW_SQ8 if self._is_compressed() else HNSW

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
        if self._floats is not None:  # before the ids become searchable
            self._floats.write(ids, vectors)
        with self._writers, self._lock:
            self._changes += 1
            revived = self._tombstones.intersection(ids.tolist())
            if revived:  # re-adding a tombstoned id: drop the old vector first
                self._rebuild(exclude=set(self._tombstones))
            self._index.add_with_ids(vectors, ids)
            if not self._is_graph() and self._index.ntotal > self._hnsw_threshold:
                self._rebuild(exclude=set(), kind=HNSW)

    def remove(self, ids: Ids) -> None:
        with self._writers, self._lock:
            self._changes += 1
            if self._floats is not None:  # an erased fact's vector leaves the float file now
                self._floats.forget(np.asarray(ids, dtype=np.int64))
            if not self._is_graph():
                self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))
                return
            present = set(faiss.vector_to_array(self._index.id_map).tolist())
            self._tombstones.update(i for i in ids.tolist() if i in present)
            if len(self._tombstones) > TOMBSTONE_REBUILD_FRACTION * self._index.ntotal:
                self._rebuild(exclude=self._tombstones)

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
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self._dimension)
        if excluded is not None and allowed is not None:
            allowed, excluded = np.setdiff1d(allowed, excluded), None
        with self._lock:
            if self._index.ntotal == 0 or (allowed is not None and len(allowed) == 0):
                return []
            hnsw = self._is_graph()
            rerank = self._is_compressed() and exact
            if allowed is not None and hnsw and len(allowed) <= self._exact_filter_limit:
                return self._brute_force(query[0], k, allowed)
            keep: list[Any] = []  # selectors must outlive the search call
            selector = None
            if allowed is not None:
                selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
                keep.append(selector)
            if self._tombstones or (excluded is not None and len(excluded)):
                dead = self._gone_selector(excluded)
                alive = faiss.IDSelectorNot(dead)
                keep += [dead, alive]
                selector = alive if selector is None else faiss.IDSelectorAnd(selector, alive)
                keep.append(selector)
            wanted = k + self._rerank_margin if rerank else k
            if hnsw:
                params = faiss.SearchParametersHNSW(
                    efSearch=max(self._ef_search if ef is None else ef, wanted), sel=selector
                )
            else:
                params = faiss.SearchParameters(sel=selector)
            scores, labels = _search_alone(self._index, query, wanted, params)
            changes = self._changes  # what the labels name
        found = labels[0] >= 0
        if rerank:  # outside the lock: the exact vectors come from the catalog
            return self._rerank(query[0], labels[0][found], scores[0][found], k, changes)
        return _ordered(labels[0][found], scores[0][found], k)

    def _gone_selector(self, excluded: Ids | None) -> Any:
        """Under the lock: a selector of the tombstones and ``excluded``. Reused while the
        index has not changed and ``excluded`` is the very array of the last call (the
        catalog answers the same read-only array until the superseded facts change)."""
        memo = self._gone
        if (
            memo is not None
            and memo[0] == self._changes
            and memo[1] == len(self._tombstones)
            and memo[2] is excluded
        ):
            return memo[3]
        gone = np.fromiter(self._tombstones, dtype=np.int64)
        if excluded is not None:
            gone = np.union1d(gone, excluded)
        dead = faiss.IDSelectorBatch(np.ascontiguousarray(gone, dtype=np.int64))
        # the memo holds ``excluded`` itself, so its identity cannot pass to another array
        self._gone = (self._changes, len(self._tombstones), excluded, dead)
        return dead

    def _rerank(
        self, query: Vectors, ids: Ids, approximate: Vectors, k: int, changes: int
    ) -> list[Hit]:
        """The top ``k`` of ``ids`` (labels of the index at change count ``changes``) by
        their exact inner product with ``query``."""
        try:
            vectors = self._exact_vectors(ids)
            scores = vectors @ query
        except StorageError:  # a fact left the catalog since the search: keep the codes' order
            log.debug("re-rank skipped: a candidate left the catalog meanwhile")
            scores = approximate
        else:
            # the query's relevance (``similarity``) asks for some of these again: keep them
            # for this thread's next call instead of reading the catalog twice
            # (stamped with the count the labels were read at: any change since voids them)
            self._recent.vectors = (changes, dict(zip(ids.tolist(), vectors, strict=True)))
        return _ordered(ids, scores, k)

    def _exact_vectors(self, ids: Ids) -> Vectors:
        """The float vectors of ``ids``: from the float file where it holds them, else from
        the catalog (``StorageError`` when it lacks one), written back to the file unless the
        index changed meanwhile (an id may then name another fact)."""
        assert self._exact is not None
        ids = np.asarray(ids, dtype=np.int64)
        if self._floats is None:
            return np.asarray(self._exact(ids), dtype=np.float32)
        changes = self._changes
        vectors, found = self._floats.read(ids)
        if found.all():
            return vectors
        missing = ids[~found]
        fetched = np.asarray(self._exact(missing), dtype=np.float32)
        vectors[~found] = fetched
        with self._lock:
            if self._changes == changes:
                self._floats.write(missing, fetched)
        return vectors

    def similarity(self, vector: Vectors, ids: Ids) -> Vectors:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(self._dimension)
        if self._is_compressed():
            return self._exact_similarity(query, ids)
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

    def _exact_similarity(self, query: Vectors, ids: Ids) -> Vectors:
        """``similarity`` of a compressed index: the float vectors, from the last re-rank of
        this thread where it had them, else from the catalog; NaN for ids the index does not
        hold (tombstoned, or a catalog read that failed)."""
        out = np.full(len(ids), np.nan, dtype=np.float32)
        changes, recent = getattr(self._recent, "vectors", (-1, {}))
        self._recent.vectors = (-1, {})
        if changes != self._changes:  # the index changed since: an id may name another fact
            recent = {}
        missing: list[int] = []
        with self._lock:
            for n, i in enumerate(ids.tolist()):
                if i in self._tombstones:
                    continue
                found = recent.get(i)
                if found is not None:
                    out[n] = float(found @ query)
                    continue
                try:
                    self._index.reconstruct(int(i))  # held? (raises when not in the id map)
                except RuntimeError:
                    continue
                missing.append(n)
        if missing:
            try:
                out[missing] = self._exact_vectors(ids[missing]) @ query
            except StorageError:
                log.debug("exact similarity skipped: a fact left the catalog meanwhile")
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
        if self._floats is not None:  # the bulk of the sync, before searches wait for it
            self._floats.flush()
        with self._writers:
            with self._lock:
                if self._tombstones:
                    self._rebuild(exclude=self._tombstones)
                if self._floats is not None:  # every id the saved index holds has its floats
                    self._floats.flush()
            # writers wait for ``_writers``, so the index stays as it is; searches go on
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

    def close(self) -> None:
        """Release the float file (after the last search; the index stays usable, reading
        its floats from the catalog)."""
        if self._floats is not None:
            self._floats.close()

    # -- internals ---------------------------------------------------------------------------

    def _brute_force(self, query: Vectors, k: int, allowed: Ids) -> list[Hit]:
        keys = np.ascontiguousarray(allowed, dtype=np.int64)
        present = faiss.vector_to_array(self._index.id_map)
        keys = keys[np.isin(keys, present)]
        if self._tombstones:
            keys = keys[~np.isin(keys, np.fromiter(self._tombstones, dtype=np.int64))]
        if len(keys) == 0:
            return []
        vectors = self._stored_vectors(keys)
        scores = vectors @ query
        top = np.argpartition(-scores, min(k, len(keys)) - 1)[:k] if len(keys) > k else None
        order = np.arange(len(keys)) if top is None else top
        ranked = sorted(order.tolist(), key=lambda j: (-scores[j], keys[j]))
        return [Hit(int(keys[j]), float(scores[j])) for j in ranked[:k]]

    def _stored_vectors(self, ids: Ids) -> Vectors:
        """The float vectors of ``ids`` (held by the index): from the catalog when the index
        holds codes, else from the index itself."""
        if self._is_compressed() and self._exact is not None:
            try:
                return self._exact_vectors(ids)
            except StorageError:
                log.warning("catalog lacks some indexed vectors: using their 8-bit codes")
        vectors: Vectors = self._index.reconstruct_batch(np.ascontiguousarray(ids))
        return vectors

    def _rebuild(self, exclude: set[int], kind: str | None = None) -> None:
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        if exclude:
            ids = ids[~np.isin(ids, np.fromiter(exclude, dtype=np.int64))]
        target = HNSW if kind == HNSW or (kind is None and self._is_graph()) else FLAT
        index = self._new_hnsw() if target == HNSW else self._new_flat()
        log.info("building %s index over %d vectors", target, len(ids))
        if len(ids) and not index.is_trained:
            sample = ids
            if len(ids) > TRAIN_SAMPLE:
                rng = np.random.default_rng(len(ids))
                sample = np.sort(rng.choice(ids, TRAIN_SAMPLE, replace=False))
            index.train(np.ascontiguousarray(self._stored_vectors(sample)))
        for start in range(0, len(ids), REBUILD_CHUNK):
            chunk = ids[start : start + REBUILD_CHUNK]
            index.add_with_ids(np.ascontiguousarray(self._stored_vectors(chunk)), chunk)
        self._use(index)
        self._tombstones = set()


def _ordered(ids: Ids, scores: Vectors, k: int) -> list[Hit]:
    """The first ``k`` of ``ids`` by (score desc, id asc)."""
    order = np.lexsort((ids, -np.asarray(scores, dtype=np.float64)))[:k]
    return [
        Hit(i, s)
        for i, s in zip(ids[order].tolist(), np.asarray(scores)[order].tolist(), strict=True)
    ]
