"""Runs inside .venv-bench (chromadb installed): load vectors into a running Chroma server and
time one query at a time with the given query vectors (``--load-only``: only load them).
Invoked by bench_query.py.

With ``--node-url`` and ``--node NAME=BODIES`` (repeatable: one request body per line, each
encoded again per request) it instead times Chroma and each named set of the node's lean
vector-in queries in interleaved blocks: ``--rounds`` rounds (default: two per system), each
all queries on one system then all on the next, the order rotated every round, from this one
process and its one HTTP library. A slow minute of the machine then lands on every system alike
instead of on whichever was measured in it."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import chromadb
import httpx
import numpy as np
import orjson


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True, help="npz with ids, vectors, queries")
    parser.add_argument("--out", required=True)
    parser.add_argument("--node-url", help="a running node to compare with, interleaved")
    parser.add_argument("--node", action="append", default=[], help="NAME=query bodies (jsonl)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="default: two per system; rounded up to a multiple of the systems",
    )
    parser.add_argument("--load-only", action="store_true", help="load the vectors and stop")
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
    out: dict[str, Any] = {"load_s": load_s, "chromadb": chromadb.__version__}
    if args.node_url and args.node:
        nodes = {}
        for named in args.node:
            name, _, path = named.partition("=")
            with open(path, "rb") as fh:
                nodes[name] = [orjson.loads(line) for line in fh if line.strip()]
        systems = len(nodes) + 1  # every system in every place of the order equally often
        rounds = -(-(args.rounds or 2 * systems) // systems) * systems
        out["interleaved"] = interleaved(collection, queries, args.node_url, nodes, rounds)
    elif not args.load_only:
        for q in queries[:30]:  # warm up
            collection.query(query_embeddings=[q], n_results=10)
        latencies, found = [], []
        for q in queries:
            t0 = time.perf_counter()
            result = collection.query(query_embeddings=[q], n_results=10)
            latencies.append((time.perf_counter() - t0) * 1000)
            found.append([int(i) for i in result["ids"][0]])
        out.update(latency_ms=latencies, found=found)
    with open(args.out, "w") as fh:
        json.dump(out, fh)


def interleaved(
    collection: Any,
    queries: np.ndarray,
    url: str,
    nodes: dict[str, list[dict[str, Any]]],
    rounds: int,
) -> dict[str, Any]:
    """Per system, the latency of every query of every round (ms); each node request body is
    encoded inside the timing, as Chroma's client encodes its query (orjson, as the node's own
    client does)."""
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=60) as node:

        def ask_node(body: dict[str, Any]) -> None:
            node.post("/v1/query", content=orjson.dumps(body), headers=headers).raise_for_status()

        def ask_chroma(q: np.ndarray) -> None:
            collection.query(query_embeddings=[q], n_results=10)

        systems: dict[str, tuple[Any, list[Any]]] = {"chroma": (ask_chroma, list(queries))}
        systems.update((name, (ask_node, bodies)) for name, bodies in nodes.items())
        names = list(systems)
        took: dict[str, list[float]] = {name: [] for name in names}
        by_round: dict[str, list[float]] = {name: [] for name in names}
        for n in range(rounds):
            turn = n % len(names)
            for name in names[turn:] + names[:turn]:
                ask, items = systems[name]
                for item in items[:30]:  # warm up after the other system ran
                    ask(item)
                block = []
                for item in items:
                    t0 = time.perf_counter()
                    ask(item)
                    block.append((time.perf_counter() - t0) * 1000)
                took[name] += block
                by_round[name].append(round(float(np.median(block)), 3))
    return {"rounds": rounds, "latency_ms": took, "round_p50_ms": by_round}


if __name__ == "__main__":
    main()
