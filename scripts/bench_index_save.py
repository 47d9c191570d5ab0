"""How long a save of the vector index holds the index's lock: ``FaissIndex.save`` serialises
the index to a temporary file and syncs it under the lock, and every search waits meanwhile.

    .venv/bin/python scripts/bench_index_save.py /tmp/knowhub-scale/node/vectors.faiss

Reads the saved index (as the node does at start), then times the two steps of a save on it:
``faiss.write_index`` to a file beside it and ``os.fsync`` of that file (removed after).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import faiss
from _bench import machine, report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("index", type=Path, help="a saved vectors.faiss")
    args = parser.parse_args()
    started = time.perf_counter()
    index: Any = faiss.read_index(str(args.index))
    read_s = time.perf_counter() - started
    tmp = args.index.with_name(args.index.name + ".bench-tmp")
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
    report(
        "index-save",
        {
            "machine": machine(),
            "index": str(args.index),
            "vectors": int(index.ntotal),
            "file_mib": round(size / 2**20, 1),
            "read_s": round(read_s, 2),
            "write_index_s": round(written - started, 2),
            "fsync_s": round(synced - written, 2),
        },
    )


if __name__ == "__main__":
    main()
