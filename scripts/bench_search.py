"""The search part of a query at scale, in-process: the node's Retriever (FAISS + the top-k
BM25 index + fusion + rows + relevance) against the same Retriever with the keyword side
answered by SQLite FTS5 (the path before issue 18), on the same catalog, in one run.

    .venv/bin/python scripts/bench_search.py --n 100000

Texts: n distinct SciFact sentences and clauses (``_bench.synthetic_facts``). Vectors: random
unit vectors (seeded), because embedding 100k texts takes this 2-core machine most of an hour;
the search cost of FAISS HNSW depends on the vectors' distribution only mildly and random
384-d vectors are the harder case (longer graph walks, lower recall). Queries: the 300 SciFact
test claims, embedded with the node's default embedder (their dense side therefore ranks
random neighbours: timing only, no quality here; quality is bench_quality.py's).
Reported: p50/p99 of ``Retriever.rank`` per mode and k, and the keyword part alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _bench import machine, percentiles, report, scifact_test_queries, synthetic_facts

from index.bm25_index import Bm25Index
from index.faiss_index import FaissIndex
from index.onnx_embedder import OnnxEmbedder
from index.onnx_export import default_onnx_dir, export_model
from index.sqlite_catalog import SqliteCatalog
from node.facts import make_fact
from node.ports import KeywordIndex, NewFact
from node.retrieval import Retriever
from node.search import Hit, Query, SearchMode


class Fts5Keywords:
    """The keyword side as it was: the catalog's FTS5 ``ORDER BY bm25()`` (filters none)."""

    def __init__(self, catalog: SqliteCatalog) -> None:
        self._catalog = catalog

    def search(self, text: str, k: int, allowed: Any = None, excluded: Any = None) -> list[Hit]:
        return self._catalog.keyword_search(text, k, None, excluded is not None)


def build(n: int, where: Path) -> tuple[SqliteCatalog, FaissIndex, Bm25Index]:
    rng = np.random.default_rng(7)
    texts = [f["text"] for f in synthetic_facts(n)]
    catalog = SqliteCatalog(where / "catalog.sqlite3")
    index = FaissIndex(384, where / "vectors.faiss")
    keywords = Bm25Index(path=where / "keywords.bm25")
    started = time.perf_counter()
    for start in range(0, n, 5000):
        chunk = texts[start : start + 5000]
        vectors = rng.standard_normal((len(chunk), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = catalog.insert(
            [NewFact(make_fact(t), v, None, False) for t, v in zip(chunk, vectors, strict=True)]
        )
        ids = np.array([r for r, _ in rows], dtype=np.int64)
        index.add(ids, vectors)
        keywords.add(ids, chunk)
    print(f"built {n} facts in {time.perf_counter() - started:.0f} s ({index.kind})")
    return catalog, index, keywords


def timed(retriever: Retriever, queries: list[Query], vectors: np.ndarray) -> dict[str, float]:
    for q, v in zip(queries[:30], vectors[:30], strict=True):  # warm up
        retriever.rank(q, v)
    took = []
    for q, v in zip(queries, vectors, strict=True):
        t0 = time.perf_counter()
        retriever.rank(q, v)
        took.append((time.perf_counter() - t0) * 1000)
    return percentiles(took)


def keyword_part(keywords: KeywordIndex | Fts5Keywords, texts: list[str], k: int) -> Any:
    took = []
    for text in texts:
        t0 = time.perf_counter()
        keywords.search(text, k)
        took.append((time.perf_counter() - t0) * 1000)
    return percentiles(took)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    texts = list(scifact_test_queries()[0].values())
    model_dir = default_onnx_dir()
    export_model(model_dir)
    embedder = OnnxEmbedder(model_dir, quantized=True, threads=1)
    qv = np.stack([embedder.embed([t])[0] for t in texts])
    with tempfile.TemporaryDirectory() as tmp:
        catalog, index, keywords = build(args.n, Path(tmp))
        new = Retriever(catalog, index, keywords, embedder)
        old = Retriever(catalog, index, Fts5Keywords(catalog), embedder)  # type: ignore[arg-type]
        result: dict[str, Any] = {"machine": machine(), "n": args.n, "index": index.kind}
        for k in (5, 10):
            for mode in (SearchMode.HYBRID, SearchMode.KEYWORD, SearchMode.DENSE):
                queries = [Query(t, k=k, mode=mode) for t in texts]
                result[f"{mode.value}_k{k}"] = {
                    "fts5_ms": timed(old, queries, qv),
                    "bm25_index_ms": timed(new, queries, qv),
                }
        result["keyword_part_top100"] = {
            "fts5_ms": keyword_part(Fts5Keywords(catalog), texts, 100),
            "bm25_index_ms": keyword_part(keywords, texts, 100),
        }
        catalog.close()
    report("search", result)


if __name__ == "__main__":
    main()
