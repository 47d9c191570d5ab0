"""Query latency and recall: the node over REST (dense and hybrid) against bare embed + FAISS
in-process and a Chroma server holding the same vectors, all in one run.

    .venv/bin/python scripts/bench_query.py --dataset scifact            # 5,183 facts
    .venv/bin/python scripts/bench_query.py --dataset synthetic --n 100000

Queries are the 300 SciFact test claims. Chroma is timed once its server and the node are
quiet again after the load (Chroma indexes a bulk load in the background). Recall@10 is
against exact inner-product search over the same vectors. The node's embed and search times
come from its Server-Timing header. Chroma runs from .venv-bench (pip install
chromadb==1.5.9) as `chroma run` on 127.0.0.1.
The node's lean vector-in query is also run at each search breadth of ``EF_SWEEP`` (the
query's ``ef``): its latency and recall curve. Last, one client process times Chroma and the
node's lean vector-in query in interleaved blocks (all 300 queries a block, the order rotated
every round): at the node's default breadth, and at the narrowest of ``EF_SWEEP`` whose recall
reaches Chroma's own in this run (equal-recall comparison, as ann-benchmarks compares). These
are the like-for-like ratios, which a slow minute of a shared machine cannot tilt.
Memory per fact = (RSS of the loaded node - RSS of an empty node) / facts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import httpx
import numpy as np
import orjson
from _bench import (
    JSON,
    OUT,
    ROOT,
    free_port,
    ingest,
    load_model,
    machine,
    percentiles,
    report,
    rss_mib,
    running_node,
    scifact_facts,
    scifact_test_queries,
    synthetic_facts,
    wait_quiet,
)

CHROMA_VENV = ROOT / ".venv-bench"
#: What Chroma's answer holds here (ids and distances: the bench stores no documents in it).
LEAN = ["cid", "score"]
#: Search breadths (the query's ``ef``) the lean vector-in query is also run at; the node's
#: default (``KNOWHUB_HNSW_EF_SEARCH``, 192) is the plain run.
EF_SWEEP = (64, 100, 128, 160)


def recall_at_10(found: list[list[int]], exact: np.ndarray) -> float:
    return float(
        np.mean(
            [len(set(f[:10]) & set(e.tolist())) / 10 for f, e in zip(found, exact, strict=True)]
        )
    )


def timing(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        out[name] = float(dur)
    return out


def query_bodies(
    queries: list[str],
    mode: str,
    vectors: np.ndarray | None = None,
    include: list[str] | None = None,
    ef: int | None = None,
) -> list[dict[str, Any]]:
    """The request body of each query, k = 10: with ``vectors``, the query embeddings too;
    with ``include``, the fields asked for; with ``ef``, that search breadth."""
    bodies: list[dict[str, Any]] = [{"query": q, "k": 10, "mode": mode} for q in queries]
    if ef is not None:
        for body in bodies:
            body["ef"] = ef
    if include is not None:
        for body in bodies:
            body["include"] = include
    if vectors is not None:
        for body, v in zip(bodies, vectors, strict=True):
            body["vector"] = v.tolist()
    return bodies


def node_queries(
    url: str,
    queries: list[str],
    mode: str,
    cid_to_id: dict[str, int],
    vectors: np.ndarray | None = None,
    include: list[str] | None = None,
    ef: int | None = None,
) -> dict[str, Any]:
    """One query at a time; with ``vectors``, the client sends the query embeddings; with
    ``include``, it asks for a lean answer (``["cid", "score"]``: what Chroma's answer holds
    here, ids and distances, since it stores no documents); with ``ef``, that breadth."""
    total, embed, search, found = [], [], [], []
    bodies = query_bodies(queries, mode, vectors, include, ef)
    with httpx.Client(base_url=url, timeout=60) as client:
        for body in bodies[:30]:
            client.post("/v1/query", json=body)
        for body in bodies:
            t0 = time.perf_counter()
            response = client.post("/v1/query", content=orjson.dumps(body), headers=JSON)
            total.append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()
            t = timing(response.headers["server-timing"])
            embed.append(t["embed"])
            search.append(t["search"])
            found.append([cid_to_id[h["cid"]] for h in orjson.loads(response.content)["results"]])
    return {
        "total_ms": percentiles(total),
        "embed_ms": percentiles(embed),
        "search_ms": percentiles(search),
        "total_minus_embed_ms": percentiles([a - b for a, b in zip(total, embed, strict=True)]),
        "found": found,
    }


def catalog_vectors(data_dir: Path) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The node's searchable facts: near-duplicates (linked in ``duplicates``, issue 20) are
    stored but never searched, so neither exact search nor Chroma gets them."""
    db = sqlite3.connect(data_dir / "catalog.sqlite3")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    linked = "WHERE id NOT IN (SELECT fact_id FROM duplicates)" if "duplicates" in tables else ""
    rows = db.execute(f"SELECT id, cid, vector FROM facts {linked} ORDER BY id").fetchall()
    db.close()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    vectors = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
    return ids, vectors, {r[1]: r[0] for r in rows}


def bare(
    model: Any, queries: list[str], ids: np.ndarray, vectors: np.ndarray
) -> tuple[dict[str, Any], np.ndarray]:
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    flat.add_with_ids(vectors, ids)
    started = time.perf_counter()
    hnsw_inner = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    hnsw_inner.hnsw.efConstruction = 80
    hnsw_inner.hnsw.efSearch = 128
    hnsw = faiss.IndexIDMap2(hnsw_inner)
    hnsw.add_with_ids(vectors, ids)
    build_s = time.perf_counter() - started
    embed, flat_ms, hnsw_ms, qv = [], [], [], []
    flat_found, hnsw_found = [], []
    for q in queries:
        t0 = time.perf_counter()
        v = model.encode([q], normalize_embeddings=True).astype(np.float32)
        t1 = time.perf_counter()
        _, labels = flat.search(v, 10)
        t2 = time.perf_counter()
        _, hlabels = hnsw.search(v, 10)
        t3 = time.perf_counter()
        embed.append((t1 - t0) * 1000)
        flat_ms.append((t2 - t1) * 1000)
        hnsw_ms.append((t3 - t2) * 1000)
        qv.append(v[0])
        flat_found.append(labels[0].tolist())
        hnsw_found.append(hlabels[0].tolist())
    return {
        "embed_ms": percentiles(embed),
        "flat_search_ms": percentiles(flat_ms),
        "hnsw_search_ms": percentiles(hnsw_ms),
        "hnsw_build_s": round(build_s, 1),
        "flat_found": flat_found,
        "hnsw_found": hnsw_found,
    }, np.stack(qv)


def chroma(
    ids: np.ndarray,
    vectors: np.ndarray,
    qv: np.ndarray,
    tag: str,
    node_url: str,
    node_pid: int,
    node_systems: Callable[[list[list[int]]], dict[str, list[dict[str, Any]]]],
) -> dict[str, Any]:
    """Chroma's latency and answers; then Chroma and the node's lean vector-in queries that
    ``node_systems`` names (given Chroma's answers) timed in interleaved blocks by one client
    process (``_chroma_probe.py``)."""
    if not (CHROMA_VENV / "bin" / "chroma").exists():
        return {"skipped": "no .venv-bench with chromadb"}
    path = OUT / f"chroma-{tag}"
    shutil.rmtree(path, ignore_errors=True)
    npz = OUT / f"chroma-{tag}.npz"
    np.savez(npz, ids=ids, vectors=vectors, queries=qv)
    port = free_port()
    server = subprocess.Popen(
        [
            str(CHROMA_VENV / "bin" / "chroma"),
            "run",
            "--path",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def probe(*extra: str) -> dict[str, Any]:
        out = OUT / f"chroma-{tag}.json"
        command = [str(CHROMA_VENV / "bin" / "python"), str(ROOT / "scripts" / "_chroma_probe.py")]
        command += ["--port", str(port), "--data", str(npz), "--out", str(out), *extra]
        subprocess.run(command, check=True)
        answer: dict[str, Any] = json.loads(out.read_text())
        return answer

    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        load_s = probe("--load-only")["load_s"]
        # Chroma indexes a bulk load in the background for a while: time nothing meanwhile
        quiet_s, quiet = wait_quiet([server.pid, node_pid])
        result = probe()
        result.update(load_s=load_s, quiet_after_load_s=quiet_s, quiet_after_load=quiet)
        named = []
        for name, bodies in node_systems(result["found"]).items():
            lines = OUT / f"chroma-{tag}-{name}-bodies.jsonl"
            lines.write_bytes(b"".join(orjson.dumps(b) + b"\n" for b in bodies))
            named += ["--node", f"{name}={lines}"]
        result["interleaved"] = probe("--node-url", node_url, *named)["interleaved"]
        result["rss_mib"] = round(rss_mib(server.pid), 1)
    finally:
        server.terminate()
        server.wait(timeout=60)
    result["latency_ms"] = percentiles(result["latency_ms"])
    took = result["interleaved"].pop("latency_ms")
    chroma_p50 = percentiles(took["chroma"])["p50"]
    for name, values in took.items():
        result["interleaved"][f"{name}_ms"] = percentiles(values)
        if name != "chroma":
            ratio = percentiles(values)["p50"] / chroma_p50
            result["interleaved"][f"{name}_over_chroma_p50"] = round(ratio, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=["scifact", "synthetic"], default="scifact")
    parser.add_argument("--n", type=int, default=100_000, help="facts for --dataset synthetic")
    parser.add_argument("--ingest-only", action="store_true", help="load the node and stop")
    args = parser.parse_args()
    if args.dataset == "scifact":
        facts, data_dir = scifact_facts(), OUT / "scifact"
    else:
        facts, data_dir = synthetic_facts(args.n), OUT / f"synthetic-{args.n}"
    queries = list(scifact_test_queries()[0].values())
    if args.ingest_only:
        with running_node(data_dir) as (url, _pid):
            ingest(url, facts)
        return

    empty_dir = OUT / "empty"
    shutil.rmtree(empty_dir, ignore_errors=True)
    with running_node(empty_dir) as (url, pid):
        httpx.post(f"{url}/v1/query", json={"query": "warm up"}, timeout=60)
        empty_rss = rss_mib(pid)

    ingest_s = None
    with running_node(data_dir) as (url, _pid):
        if httpx.get(f"{url}/v1/status").json()["facts"] < len(facts):
            ingest_s = ingest(url, facts)
    ids, vectors, cid_to_id = catalog_vectors(data_dir)
    model = load_model()
    bare_result, qv = bare(model, queries, ids, vectors)
    del model
    exact = ids[np.argsort(-(qv @ vectors.T), axis=1)[:, :10]]
    with running_node(data_dir) as (url, pid):
        status = httpx.get(f"{url}/v1/status").json()
        # one untimed pass first: the figures are a warm node's (the first pass after a start
        # reads the index and catalog pages from disk; a text query took ~8.6 ms then, ~5 after)
        node_queries(url, queries, "hybrid", cid_to_id)
        dense = node_queries(url, queries, "dense", cid_to_id)
        dense_vec = node_queries(url, queries, "dense", cid_to_id, qv)
        dense_lean = node_queries(url, queries, "dense", cid_to_id, qv, LEAN)
        sweep = {}
        for ef in EF_SWEEP:
            run = node_queries(url, queries, "dense", cid_to_id, qv, LEAN, ef)
            sweep[ef] = {
                "total_ms": run["total_ms"],
                "search_ms": run["search_ms"],
                "recall@10": recall_at_10(run["found"], exact),
            }
        hybrid = node_queries(url, queries, "hybrid", cid_to_id)
        loaded_rss = rss_mib(pid)

        def node_systems(chroma_found: list[list[int]]) -> dict[str, list[dict[str, Any]]]:
            """The node at its default breadth, and at the narrowest swept one whose recall
            reaches Chroma's (none when no swept breadth does)."""
            target = recall_at_10(chroma_found, exact)
            systems = {"node": query_bodies(queries, "dense", qv, LEAN)}
            reach = [ef for ef in EF_SWEEP if sweep[ef]["recall@10"] >= target]
            if reach:
                ef = min(reach)
                systems[f"node_ef{ef}"] = query_bodies(queries, "dense", qv, LEAN, ef)
            return systems

        chroma_result = chroma(ids, vectors, qv, args.dataset, url, pid, node_systems)

    disk = sum(p.stat().st_size for p in data_dir.iterdir() if p.is_file())
    result = {
        "machine": machine(),
        "dataset": args.dataset,
        "facts": len(ids),
        "queries": len(queries),
        "ingest_s": ingest_s,
        "node_index": status["index"],
        "node_dense": {
            **{k: v for k, v in dense.items() if k != "found"},
            "recall@10": recall_at_10(dense.pop("found"), exact),
        },
        "node_dense_vector_in": {
            **{k: v for k, v in dense_vec.items() if k != "found"},
            "recall@10": recall_at_10(dense_vec.pop("found"), exact),
        },
        "node_dense_vector_in_lean": {
            **{k: v for k, v in dense_lean.items() if k != "found"},
            "recall@10": recall_at_10(dense_lean.pop("found"), exact),
        },
        "node_dense_vector_in_lean_ef": sweep,
        "node_hybrid": {k: v for k, v in hybrid.items() if k != "found"},
        "bare": {
            "embed_ms": bare_result["embed_ms"],
            "flat_search_ms": bare_result["flat_search_ms"],
            "flat_recall@10": recall_at_10(bare_result["flat_found"], exact),
            "hnsw_search_ms": bare_result["hnsw_search_ms"],
            "hnsw_recall@10": recall_at_10(bare_result["hnsw_found"], exact),
            "hnsw_build_s": bare_result["hnsw_build_s"],
        },
        "chroma": {k: v for k, v in chroma_result.items() if k != "found"},
        "memory": {
            "empty_node_rss_mib": round(empty_rss, 1),
            "loaded_node_rss_mib": round(loaded_rss, 1),
            "rss_bytes_per_fact": round((loaded_rss - empty_rss) * 2**20 / len(ids)),
            "disk_bytes_per_fact": round(disk / len(ids)),
        },
    }
    if "found" in chroma_result:
        result["chroma"]["recall@10"] = recall_at_10(chroma_result["found"], exact)
    report(f"query-{args.dataset}-{len(ids)}", result)


if __name__ == "__main__":
    main()
