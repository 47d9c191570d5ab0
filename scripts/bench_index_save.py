"""What a save of the vector index costs the searches running beside it, in one run.

    .venv/bin/python scripts/bench_index_save.py /tmp/knowhub-scale/node/vectors.faiss

1. The two steps of a save on the saved index: ``faiss.write_index`` to a file beside it and
   ``os.fsync`` of that file (removed after).
2. Searches during a save: a ``FaissIndex`` opened on a copy of the file saves itself in a
   thread while this thread searches back to back (random unit queries, k = 10, ranked by the
   codes so that no float vector is read: only the index's locks matter). Once as the index
   saves now (only the writers' lock held while it serialises), once as it saved before
   (the search lock held for the whole save, reproduced by holding it around ``save``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from _bench import machine, report

from index.faiss_index import FaissIndex


def write_and_sync(path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    index: Any = faiss.read_index(str(path))
    read_s = time.perf_counter() - started
    tmp = path.with_name(path.name + ".bench-tmp")
    try:
        started = time.perf_counter()
        faiss.write_index(index, str(tmp))
        written = time.perf_counter()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        synced = time.perf_counter()
        size = tmp.stat().st_size
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "vectors": int(index.ntotal),
        "dimension": int(index.d),
        "file_mib": round(size / 2**20, 1),
        "read_s": round(read_s, 2),
        "write_index_s": round(written - started, 2),
        "fsync_s": round(synced - written, 2),
    }


def searches_during(index: FaissIndex, save: Callable[[], None], queries: Any) -> dict[str, Any]:
    done = threading.Event()
    took: dict[str, float] = {}

    def saving() -> None:
        started = time.perf_counter()
        save()
        took["save_s"] = time.perf_counter() - started
        done.set()

    thread = threading.Thread(target=saving)
    thread.start()
    latencies = []
    n = 0
    while not done.is_set():
        started = time.perf_counter()
        index.search(queries[n % len(queries)], 10, exact=False)
        latencies.append((time.perf_counter() - started) * 1000)
        n += 1
    thread.join()
    ms = np.asarray(latencies)
    return {
        "save_s": round(took["save_s"], 2),
        "searches_during_save": len(ms),
        "search_p50_ms": round(float(np.median(ms)), 3),
        "search_max_ms": round(float(ms.max()), 1),
    }


def no_floats(ids: Any) -> Any:
    """The codes-only searches below never ask for float vectors; a save without tombstones
    never rebuilds."""
    raise AssertionError("no float vector is read here")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("index", type=Path, help="a saved vectors.faiss")
    parser.add_argument("--compression", default="sq8", choices=["none", "sq8"])
    args = parser.parse_args()
    out: dict[str, Any] = {"machine": machine(), "index": str(args.index)}
    out.update(write_and_sync(args.index))
    scratch = Path(tempfile.mkdtemp(prefix="knowhub-save-"))
    try:
        copy = scratch / "vectors.faiss"
        shutil.copyfile(args.index, copy)
        index = FaissIndex(
            out["dimension"], copy, compression=args.compression, exact_vectors=no_floats
        )
        rng = np.random.default_rng(0)
        queries = rng.standard_normal((2000, out["dimension"])).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        for q in queries[:50]:
            index.search(q, 10, exact=False)

        def as_before() -> None:
            with index._lock:
                index.save()

        out["now"] = searches_during(index, index.save, queries)
        out["before (search lock held for the whole save)"] = searches_during(
            index, as_before, queries
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report("index-save", out)


if __name__ == "__main__":
    main()
