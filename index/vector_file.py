"""Float vectors by catalog row id in one flat file: the re-rank source of a compressed index.

What it owns
    One file of fixed-width records: the float32 vector of row id ``i`` at byte offset
    ``i * 4 * dimension``. Reads and writes are positional (``pread`` / ``pwrite``): they never
    move a file offset and never map the file: the pages a query touches
    stay in the kernel's page cache and out of the node's resident memory (a memory map would
    count every vector ever re-ranked in the process's RSS).

Why it exists
    An HNSW graph over 8-bit codes (``index.faiss_index``, ``compression="sq8"``) re-scores
    its ``k + margin`` best candidates against their float vectors. The catalog holds those
    vectors, but in its wide fact rows: a B-tree descent per row among the text, record block
    and metadata. This file answers the same question with one ``pread`` per vector, 3-4x
    cheaper (BENCHMARKS.md), and the saving grows with the catalog.

Invariants
    - A cache, never the source of truth: the catalog is. A slot that is all zero (never
      written, a hole of a sparse file, or past the end) is a miss, never a vector (every
      stored vector is a unit vector). The caller reads misses from the catalog and may write
      them back (``write``).
    - The owner writes a slot whenever it adds the id to its index, so a slot is at least as
      fresh as the index for every id the index holds, and ``flush`` (fsync) runs before the
      index file is saved: after a crash, every id in the saved index has its vector here.
    - A removed id's record is zeroed at once (``forget``): an erased fact's vector leaves
      this file with its catalog row (on disk by the next save's fsync at the latest).
    - Never fails its owner: a write or sync that fails gives the file up (closed and
      removed, every read a miss), so ingest and erasure go on and answers come from the
      catalog; a read that fails is a miss.
    - Ids are non-negative and bounded (``MAX_ID``): a hostile id can never make the file
      sparse beyond reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from node.errors import StorageError
from node.ports import Ids, Vectors

log = logging.getLogger(__name__)

#: Row ids beyond this are never cached (the catalog still answers them): a sparse file of at
#: most MAX_ID records.
MAX_ID = 2**40


class FloatVectorFile:
    def __init__(self, path: Path, dimension: int) -> None:
        self.path = path
        self._record = 4 * dimension
        self._dimension = dimension
        #: Held around every use of the descriptor, so that ``close`` (or giving the file up)
        #: never lets a read or write reach a descriptor number the process has reused.
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot open the float vector file {path}: {exc}") from exc

    @property
    def usable(self) -> bool:
        """False once closed or given up after a failed write."""
        return self._fd is not None

    def read(self, ids: Ids) -> tuple[Vectors, np.ndarray]:
        """``(vectors, found)``: the vectors of ``ids`` in order, and which of them the file
        holds (the rows of the others are zero)."""
        out = np.zeros((len(ids), self._dimension), dtype=np.float32)
        found = np.zeros(len(ids), dtype=bool)
        if len(ids) == 0:
            return out, found
        buffer: Any = out  # numpy's stubs do not declare the buffer protocol
        view = memoryview(buffer).cast("B")
        size = self._record
        with self._lock:
            fd = self._fd
            if fd is None:
                return out, found
            try:
                for n, i in enumerate(np.asarray(ids, dtype=np.int64).tolist()):
                    if 0 <= i <= MAX_ID:
                        got = os.preadv(fd, [view[n * size : (n + 1) * size]], i * size)
                        found[n] = got == size
            except OSError as exc:  # an I/O error: every row is a miss
                log.debug("float vector file read failed: %s", exc)
                return np.zeros_like(out), np.zeros_like(found)
        found &= out.any(axis=1)
        return out, found

    def write(self, ids: Ids, vectors: Vectors) -> None:
        """Store ``vectors[n]`` as the vector of ``ids[n]`` (ids beyond ``MAX_ID`` skipped).
        Never raises: a cache that cannot be written is given up (``_give_up``)."""
        rows = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self._dimension)
        size = self._record
        with self._lock:
            fd = self._fd
            if fd is None:
                return
            try:
                for i, row in zip(np.asarray(ids, dtype=np.int64).tolist(), rows, strict=True):
                    if 0 <= i <= MAX_ID:
                        os.pwrite(fd, row.tobytes(), i * size)
            except OSError as exc:
                self._give_up(f"cannot write it: {exc}")

    def forget(self, ids: Ids) -> None:
        """Zero the records of ``ids`` (misses from now on: a removed or erased fact's
        vector does not stay behind in the file; if the zeros cannot be written, the file is
        removed instead)."""
        self.write(ids, np.zeros((len(ids), self._dimension), dtype=np.float32))

    def flush(self) -> None:
        """Make every write so far durable (a file that cannot be synced is given up)."""
        with self._lock:
            fd = self._fd
            if fd is None:
                return
            try:
                os.fsync(fd)
            except OSError as exc:
                self._give_up(f"cannot sync it: {exc}")

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _give_up(self, why: str) -> None:
        """Under the lock: stop using the file and remove it (it may now hold stale or, after
        a failed ``forget``, erased records); every read is a miss from here on, so the owner
        reads the catalog. Only a restart brings the cache back."""
        log.warning("float vector file %s: %s; removing it, the catalog answers", self.path, why)
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:  # left on disk: a restart re-opens it, and reads stay exact
            log.error("cannot remove %s: %s", self.path, exc)
