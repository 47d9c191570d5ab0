"""What ranking a hybrid query's dense pool by the compressed index's codes costs in quality
and saves in time: SciFact hybrid nDCG@10 / Recall@100 with the pool re-ranked by the float
vectors (``exact=True``, the path before) and ranked by the 8-bit codes (``exact=False``, the
default since stop 34), in one run, in process.

    .venv/bin/python scripts/bench_fusion_pool.py      # needs bench-out/scifact (bench_ingest.py)

SciFact's 5,183 facts sit below the node's HNSW threshold, so its own index is exact flat
search and the default figures of bench_quality.py never touch the codes. Here the same vectors
go into an HNSW-SQ8 index built for the run (threshold 1,000, the node's M, efSearch and
re-rank margin), which the node's ``Retriever`` then searches: the 300 test claims, hybrid,
k = 100, embedded with the default int8 model. Also the p50 of ``Retriever.rank`` each way.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _bench import OUT, machine, percentiles, report, scifact_test_queries
from bench_quality import ndcg_at_10, recall_at_100

from index.faiss_index import FaissIndex
from index.onnx_embedder import OnnxEmbedder
from index.onnx_export import default_onnx_dir
from node.bootstrap import build_node
from node.search import Query, SearchMode
from node.settings import Settings


class Forced(FaissIndex):
    """The node's index with every search made exact or approximate."""

    exact = True

    def search(self, *args: Any, exact: bool = True, **kwargs: Any) -> Any:
        return super().search(*args, exact=self.exact, **kwargs)


async def run() -> dict[str, Any]:
    data = OUT / "scifact"
    os.environ.update({"KNOWHUB_LOCAL_CHAIN": "false", "KNOWHUB_P2P_LISTEN": "off"})
    node = build_node(Settings(data_dir=data))
    await node.start()
    try:
        retriever = node._retriever  # the node's own, with its catalog, keywords and curation
        ids = retriever._index.ids()
        vectors = retriever._catalog.vectors(ids)
        table = np.zeros((int(ids.max()) + 1, vectors.shape[1]), dtype=np.float32)
        table[ids] = vectors
        scratch = Path(tempfile.mkdtemp())
        index = Forced(
            vectors.shape[1],
            None,
            hnsw_threshold=1_000,
            compression="sq8",
            exact_vectors=lambda wanted: table[wanted],
            float_file=scratch / "vectors.f32",
        )
        index.add(ids, vectors)
        retriever._index = index
        embedder = OnnxEmbedder(default_onnx_dir(), quantized=True, threads=1)
        queries, qrels = scifact_test_queries()
        qv = {qid: embedder.embed([text])[0] for qid, text in queries.items()}
        out: dict[str, Any] = {"machine": machine(), "index": index.kind, "facts": len(index)}
        for label, exact in (("re-ranked (exact=True)", True), ("codes (exact=False)", False)):
            index.exact = exact
            ndcg, recall, took = [], [], []
            for qid, text in queries.items():
                query = Query(text=text, k=100, mode=SearchMode.HYBRID)
                started = time.perf_counter()
                results = retriever.rank(query, qv[qid])
                took.append((time.perf_counter() - started) * 1000)
                ranked = [r.fact.metadata["doc_id"] for r in results]
                ndcg.append(ndcg_at_10(ranked, qrels[qid]))
                recall.append(recall_at_100(ranked, qrels[qid]))
            out[label] = {
                "ndcg@10": round(100 * float(np.mean(ndcg)), 2),
                "recall@100": round(100 * float(np.mean(recall)), 2),
                "rank_ms": percentiles(took),
            }
        return out
    finally:
        await node.close()


def main() -> None:
    report("fusion-pool", asyncio.run(run()))


if __name__ == "__main__":
    main()
