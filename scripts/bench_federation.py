"""Federated retrieval benchmark (issue 21): partial replication against one node that holds
everything, in the same run.

    .venv/bin/python scripts/bench_federation.py [--nodes 10] [--collections 5] [--docs 5183]
                                                 [--queries 300] [--down 2]

SciFact's corpus (title + abstract) is split into ``--collections`` collections by a hash of the
document id; node i holds collections i and i+1 (mod the count), so with 10 nodes and 5
collections every collection has 4 holders and every node embeds 2/5 of the corpus. Every fact
is signed by one bench key, so a fact has the same CID on every node that holds it. The nodes
run on one anvil chain in a full mesh (each dials every earlier one). The baseline is one more
node, with networking off, that holds the whole corpus.

Measured, per mode (dense, hybrid), each SciFact test query asked once with scope network at
node (query number mod nodes), and once at the central node:
- recall@10 of the federated top 10 against the central top 10 (the same CIDs);
- nDCG@10 of both against SciFact's relevance judgements;
- client-side latency p50 / p95 of both;
- bytes of federated query requests and answers on the wire per query (the nodes'
  ``query_bytes`` counters, each byte counted once);
- completeness (share of answers whose ``completeness.complete`` is true).
Then ``--down`` nodes are killed (SIGKILL) and the queries (both modes) run again at the
surviving nodes: recall, completeness and the collections reported missing.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from _bench import (
    OUT,
    ROOT,
    ingest,
    machine,
    percentiles,
    report,
    running_node,
    scifact_docs,
    scifact_test_queries,
)
from network import LocalNetwork, Member

sys.path.insert(0, str(ROOT))

from node.facts import make_fact
from node.signing import SigningKey

BENCH_KEY = SigningKey(
    bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
)


def collection_of(doc_id: str, count: int) -> str:
    return f"c{int(hashlib.sha256(doc_id.encode()).hexdigest(), 16) % count}"


def signed_facts(docs: Sequence[dict[str, Any]], count: int) -> dict[str, list[dict[str, Any]]]:
    """Every document as a fact signed by the bench key, by collection."""
    out: dict[str, list[dict[str, Any]]] = {f"c{i}": [] for i in range(count)}
    for doc in docs:
        text = f"{doc['title']} {doc['text']}".strip()
        name = collection_of(doc["_id"], count)
        metadata = {"doc_id": doc["_id"]}
        fact = make_fact(text, metadata, BENCH_KEY.address, collection=name)
        out[name].append(
            {
                "text": text,
                "metadata": metadata,
                "contributor": BENCH_KEY.address,
                "signature": BENCH_KEY.sign_cid(fact.cid),
                "collection": name,
            }
        )
    return out


def held(i: int, count: int) -> list[str]:
    return sorted({f"c{i % count}", f"c{(i + 1) % count}"})


def ask(url: str, text: str, mode: str, scope: str) -> tuple[dict[str, Any], float]:
    body = {
        "query": text,
        "k": 10,
        "mode": mode,
        "scope": scope,
        "include": ["cid", "relevance", "metadata", "source"],
        "rank": "relevance",
    }
    started = time.perf_counter()
    reply = httpx.post(f"{url}/v1/query", json=body, timeout=120)
    elapsed = (time.perf_counter() - started) * 1000
    reply.raise_for_status()
    answer: dict[str, Any] = reply.json()
    return answer, elapsed


def ndcg(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    gains = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sum(g / math.log2(r + 2) for r, g in enumerate(sorted(relevant.values())[::-1][:k]))
    return gains / ideal if ideal else 0.0


def query_bytes(members: Sequence[Member]) -> int:
    total = 0
    for m in members:
        if m.proc is not None and m.proc.poll() is None:
            total += httpx.get(f"{m.url}/v1/status", timeout=60).json()["p2p"]["query_bytes"]
    return total


def run_queries(
    members: Sequence[Member],
    central: str,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    mode: str,
) -> dict[str, Any]:
    fed_ms: list[float] = []
    central_ms: list[float] = []
    recalls: list[float] = []
    fed_ndcg: list[float] = []
    central_ndcg: list[float] = []
    complete = 0
    missing: dict[str, int] = {}
    before = query_bytes(members)
    for n, (qid, text) in enumerate(queries.items()):
        member = members[n % len(members)]
        fed, ms = ask(member.url, text, mode, "network")
        fed_ms.append(ms)
        base, ms = ask(central, text, mode, "local")
        central_ms.append(ms)
        fed_cids = [h["cid"] for h in fed["results"]]
        base_cids = [h["cid"] for h in base["results"]]
        recalls.append(len(set(fed_cids) & set(base_cids)) / max(1, len(base_cids)))
        fed_ndcg.append(ndcg([h["metadata"]["doc_id"] for h in fed["results"]], qrels[qid]))
        central_ndcg.append(ndcg([h["metadata"]["doc_id"] for h in base["results"]], qrels[qid]))
        covered = fed["completeness"]
        complete += bool(covered["complete"])
        for name in covered["missing"]:
            missing[name] = missing.get(name, 0) + 1
    wire = (query_bytes(members) - before) / 2  # each byte is counted by both ends
    count = len(queries)
    return {
        "queries": count,
        "recall_at_10_vs_central": sum(recalls) / count,
        "ndcg_at_10": {
            "federated": 100 * sum(fed_ndcg) / count,
            "central": 100 * sum(central_ndcg) / count,
        },
        "latency_ms": {
            "federated": {**percentiles(fed_ms), "p95": _p95(fed_ms)},
            "central": {**percentiles(central_ms), "p95": _p95(central_ms)},
        },
        "wire_bytes_per_query": wire / count,
        "complete_share": complete / count,
        "missing_collections": missing,
    }


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def wait_for_directory(members: Sequence[Member], count: int, timeout: float = 600) -> None:
    """Until every node sees, connected, a holder of every collection it does not hold."""
    deadline = time.monotonic() + timeout
    for m in members:
        while True:
            entries = httpx.get(f"{m.url}/v1/peers", timeout=60).json().get("directory", [])
            seen = {c for e in entries if e["connected"] for c in e["collections"]}
            if seen | set(m.env["KNOWHUB_COLLECTIONS"].split(",")) >= {
                f"c{i}" for i in range(count)
            }:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{m.name} does not see every collection: {entries}")
            time.sleep(0.5)


def wait_until_gone(members: Sequence[Member], gone: set[str], timeout: float = 300) -> None:
    """Until no survivor's directory shows a killed node as connected."""
    deadline = time.monotonic() + timeout
    for m in members:
        while True:
            entries = httpx.get(f"{m.url}/v1/peers", timeout=60).json().get("directory", [])
            if not any(e["connected"] and e["peer_id"] in gone for e in entries):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{m.name} still shows a killed node connected")
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--collections", type=int, default=5)
    parser.add_argument("--docs", type=int, default=0, help="first N documents (0: all)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--down", type=int, default=2)
    args = parser.parse_args()
    docs = scifact_docs()
    if args.docs:
        docs = docs[: args.docs]
    queries, qrels = scifact_test_queries()
    queries = dict(list(queries.items())[: args.queries])
    facts = signed_facts(docs, args.collections)
    directory = OUT / "federation"
    shutil.rmtree(directory, ignore_errors=True)
    member_env = [
        {"KNOWHUB_COLLECTIONS": ",".join(held(i, args.collections))} for i in range(args.nodes)
    ]
    result: dict[str, Any] = {
        "machine": machine(),
        "command": "scripts/bench_federation.py " + " ".join(sys.argv[1:]),
        "nodes": args.nodes,
        "collections": {name: len(items) for name, items in facts.items()},
        "holders_per_collection": 2 * args.nodes // args.collections,
    }
    with (
        running_node(directory / "central", KNOWHUB_P2P_LISTEN="off") as (central, _),
        LocalNetwork(args.nodes, directory, topology="mesh", member_env=member_env) as net,
    ):
        started = time.perf_counter()
        everything = [f for items in facts.values() for f in items]

        def load(i: int) -> float:
            if i < 0:
                return ingest(central, everything)
            mine = [f for name in held(i, args.collections) for f in facts[name]]
            return ingest(net.members[i].url, mine)

        with ThreadPoolExecutor(args.nodes + 1) as pool:
            seconds = list(pool.map(load, range(-1, args.nodes)))
        result["ingest_seconds"] = {"central": seconds[0], "slowest_node": max(seconds[1:])}
        result["ingest_wall_seconds"] = time.perf_counter() - started
        wait_for_directory(net.members, args.collections)
        for mode in ("dense", "hybrid"):
            for text in list(queries.values())[:10]:  # warm up every node and the central one
                for m in net.members:
                    ask(m.url, text, mode, "network")
                ask(central, text, mode, "local")
            result[mode] = run_queries(net.members, central, queries, qrels, mode)
            report("federation", result)
        down = net.members[-args.down :] if args.down else []
        for m in down:
            assert m.proc is not None
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait()
            m.proc = None
        alive = [m for m in net.members if m not in down]
        wait_until_gone(alive, {m.peer_id for m in down})
        result["down"] = {"nodes": [m.name for m in down]}
        for mode in ("dense", "hybrid"):
            result["down"][mode] = run_queries(alive, central, queries, qrels, mode)
    report("federation", result)


if __name__ == "__main__":
    main()
