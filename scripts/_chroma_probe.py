"""Runs inside .venv-bench (chromadb installed): load vectors into a running Chroma server and
time one query at a time with the given query vectors. Invoked by bench_query.py."""

from __future__ import annotations

import argparse
import json
import time

import chromadb
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True, help="npz with ids, vectors, queries")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = np.load(args.data)
    ids = [str(i) for i in data["ids"].tolist()]
    vectors, queries = data["vectors"], data["queries"]
    client = chromadb.HttpClient(host="127.0.0.1", port=args.port)
    collection = client.get_or_create_collection("bench", metadata={"hnsw:space": "cosine"})
    started = time.perf_counter()
    if collection.count() != len(ids):
        step = 5000
        for start in range(0, len(ids), step):
            collection.add(ids=ids[start : start + step], embeddings=vectors[start : start + step])
    load_s = time.perf_counter() - started
    for q in queries[:30]:  # warm up
        collection.query(query_embeddings=[q], n_results=10)
    latencies, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        result = collection.query(query_embeddings=[q], n_results=10)
        latencies.append((time.perf_counter() - t0) * 1000)
        found.append([int(i) for i in result["ids"][0]])
    with open(args.out, "w") as fh:
        json.dump(
            {
                "load_s": load_s,
                "latency_ms": latencies,
                "found": found,
                "chromadb": chromadb.__version__,
            },
            fh,
        )


if __name__ == "__main__":
    main()
