"""What superseded facts cost every query, as their number grows: before, each query read the
whole ``superseded`` table and each dense search hashed every superseded id into a new FAISS
selector; now the catalog answers the ids it read last until the table changes, and the index
keeps its selector until the index or that answer changes. One run, in process:

    .venv/bin/python scripts/bench_supersession.py            # 1k, 10k, 100k superseded

For each count S, cumulatively in one catalog: S pairs by one contributor (a fact and the
correction that supersedes it) beside 20,000 other facts, and an HNSW index (FaissIndex,
random 64-d unit vectors) over all of them. Per query, 300 times each, same run:
- superseded ids: the catalog's ``superseded_ids`` (now) against the full read every query
  made before (the same SQL on the same connection);
- dense search leaving them out: ``FaissIndex.search`` with the selector kept (now) against
  the selector dropped before each search (what every search built before).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _bench import machine, percentiles, report

from index.faiss_index import FaissIndex
from index.sqlite_catalog import SqliteCatalog
from node.facts import make_fact
from node.ports import NewFact
from node.signing import SigningKey

DIM = 64
OTHERS = 20_000
STEP = 5_000


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def add(
    catalog: SqliteCatalog, index: FaissIndex, texts: list[tuple[str, str | None]], author: str
) -> dict[str, str]:
    """Store facts (text, supersedes) by ``author``; their CIDs by text."""
    rng = np.random.default_rng(len(index))
    cids: dict[str, str] = {}
    for start in range(0, len(texts), STEP):
        chunk = texts[start : start + STEP]
        facts = [make_fact(text, None, author, supersedes) for text, supersedes in chunk]
        vectors = unit(rng, len(facts))
        rows = catalog.insert([NewFact(f, v) for f, v in zip(facts, vectors, strict=True)])
        index.add(np.array([r for r, _ in rows], dtype=np.int64), vectors)
        cids.update((f.text, f.cid) for f in facts)
    return cids


def timed(fn: Callable[[], Any], repeats: int = 300) -> dict[str, float]:
    fn()
    took = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        took.append((time.perf_counter() - t0) * 1000)
    return {k: round(v, 4) for k, v in percentiles(took).items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="1000,10000,100000")
    args = parser.parse_args()
    author = SigningKey.generate().address
    where = Path(tempfile.mkdtemp(prefix="knowhub-supersession-"))
    catalog = SqliteCatalog(where / "catalog.sqlite3")
    index = FaissIndex(DIM, None, hnsw_threshold=1_000)
    add(catalog, index, [(f"other fact number {i}", None) for i in range(OTHERS)], author)
    query = unit(np.random.default_rng(1), 1)[0]

    def full_read() -> np.ndarray:
        with catalog._cursor() as cur:
            rows = cur.execute("SELECT fact_id FROM superseded ORDER BY fact_id")
            return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def search_fresh_selector() -> None:
        index._gone = None  # what every search did before: build it again
        index.search(query, 10, None, catalog.superseded_ids())

    out: dict[str, Any] = {"machine": machine(), "dim": DIM, "other_facts": OTHERS}
    done = 0
    for count in [int(c) for c in args.counts.split(",")]:
        started = time.perf_counter()
        old = add(
            catalog,
            index,
            [(f"claim {i}, first version", None) for i in range(done, count)],
            author,
        )
        add(
            catalog,
            index,
            [
                (f"claim {i}, corrected", old[f"claim {i}, first version"])
                for i in range(done, count)
            ],
            author,
        )
        done = count
        superseded = catalog.superseded_ids()
        assert len(superseded) == count, (len(superseded), count)
        hits = index.search(query, 10, None, superseded)
        assert not set(h.id for h in hits) & set(superseded.tolist())
        out[str(count)] = {
            "facts": len(index),
            "build_s": round(time.perf_counter() - started, 1),
            "superseded_ids_ms": {
                "before (full read per query)": timed(full_read),
                "now (cached until the table changes)": timed(catalog.superseded_ids),
            },
            "dense_search_ms": {
                "before (selector built per search)": timed(search_fresh_selector),
                "now (selector kept)": timed(
                    lambda: index.search(query, 10, None, catalog.superseded_ids())
                ),
            },
        }
        print(count, out[str(count)], flush=True)
    catalog.close()
    report("supersession", out)


if __name__ == "__main__":
    main()
