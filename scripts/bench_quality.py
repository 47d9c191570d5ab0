"""Retrieval quality on BEIR SciFact (300 test queries) through the REST API.

    .venv/bin/python scripts/bench_quality.py

Uses the node data in bench-out/scifact (from bench_ingest.py; ingests it if missing).
Facts are title + " " + text with metadata.doc_id = corpus id. Reports nDCG@10 and
Recall@100 per mode; the published MTEB figure for dense all-MiniLM-L6-v2 is nDCG@10 64.51.
"""

from __future__ import annotations

import math
import time

import httpx
from _bench import OUT, ingest, machine, report, running_node, scifact_facts, scifact_test_queries


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(rel / math.log2(rank + 2) for rank, rel in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_100(ranked: list[str], relevant: dict[str, int]) -> float:
    return len(set(ranked[:100]) & set(relevant)) / len(relevant)


def main() -> None:
    queries, qrels = scifact_test_queries()
    facts = scifact_facts()
    results: dict[str, dict[str, float]] = {}
    with (
        running_node(OUT / "scifact") as (url, _pid),
        httpx.Client(base_url=url, timeout=600) as client,
    ):
        if client.get("/v1/status").json()["facts"] < len(facts):
            ingest(url, facts)
        for mode in ("dense", "keyword", "hybrid"):
            ndcg, recall = [], []
            started = time.perf_counter()
            for qid, text in queries.items():
                body = client.post("/v1/query", json={"query": text, "k": 100, "mode": mode})
                body.raise_for_status()
                ranked = [hit["metadata"]["doc_id"] for hit in body.json()["results"]]
                ndcg.append(ndcg_at_10(ranked, qrels[qid]))
                recall.append(recall_at_100(ranked, qrels[qid]))
            results[mode] = {
                "ndcg@10": round(100 * sum(ndcg) / len(ndcg), 2),
                "recall@100": round(100 * sum(recall) / len(recall), 2),
                "seconds": round(time.perf_counter() - started, 1),
            }
    report(
        "quality",
        {
            "machine": machine(),
            "queries": len(queries),
            "modes": results,
            "reference_dense_ndcg@10": 64.51,
        },
    )


if __name__ == "__main__":
    main()
