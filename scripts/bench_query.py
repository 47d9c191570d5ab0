"""Query latency and recall: the node over REST (dense and hybrid) against bare embed + FAISS
in-process and a Chroma server holding the same vectors, all in one run.

    .venv/bin/python scripts/bench_query.py --dataset scifact            # 5,183 facts
    .venv/bin/python scripts/bench_query.py --dataset synthetic --n 100000

Queries are the 300 SciFact test claims. Recall@10 is against exact inner-product search
over the same vectors. The node's embed and search times come from its Server-Timing header.
Chroma runs from .venv-bench (pip install chromadb==1.5.9) as `chroma run` on 127.0.0.1.
Last, one client process times Chroma and the node's lean vector-in query in interleaved
blocks (4 rounds of all 300 queries each, the order swapped every round): the like-for-like
ratio, which a slow minute of a shared machine cannot tilt.
Memory per fact = (RSS of the loaded node - RSS of an empty node) / facts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import time
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
)

CHROMA_VENV = ROOT / ".venv-bench"
#: What Chroma's answer holds here (ids and distances: the bench stores no documents in it).
LEAN = ["cid", "score"]


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
) -> list[dict[str, Any]]:
    """The request body of each query, k = 10: with ``vectors``, the query embeddings too;
    with ``include``, the fields asked for."""
    bodies: list[dict[str, Any]] = [{"query": q, "k": 10, "mode": mode} for q in queries]
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
) -> dict[str, Any]:
    """One query at a time; with ``vectors``, the client sends the query embeddings; with
    ``include``, it asks for a lean answer (``["cid", "score"]``: what Chroma's answer holds
    here, ids and distances, since it stores no documents)."""
    total, embed, search, found = [], [], [], []
    bodies = query_bodies(queries, mode, vectors, include)
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
    node_bodies: list[dict[str, Any]],
) -> dict[str, Any]:
    """Chroma's latency and answers, then Chroma and the node's lean vector-in query timed in
    interleaved blocks by one client process (``_chroma_probe.py``)."""
    if not (CHROMA_VENV / "bin" / "chroma").exists():
        return {"skipped": "no .venv-bench with chromadb"}
    path = OUT / f"chroma-{tag}"
    shutil.rmtree(path, ignore_errors=True)
    npz = OUT / f"chroma-{tag}.npz"
    np.savez(npz, ids=ids, vectors=vectors, queries=qv)
    bodies = OUT / f"chroma-{tag}-node-bodies.jsonl"
    bodies.write_bytes(b"".join(orjson.dumps(b) + b"\n" for b in node_bodies))
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
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        out = OUT / f"chroma-{tag}.json"
        subprocess.run(
            [
                str(CHROMA_VENV / "bin" / "python"),
                str(ROOT / "scripts" / "_chroma_probe.py"),
                "--port",
                str(port),
                "--data",
                str(npz),
                "--out",
                str(out),
                "--node-url",
                node_url,
                "--node-bodies",
                str(bodies),
            ],
            check=True,
        )
        result: dict[str, Any] = json.loads(out.read_text())
        result["rss_mib"] = round(rss_mib(server.pid), 1)
    finally:
        server.terminate()
        server.wait(timeout=60)
    result["latency_ms"] = percentiles(result["latency_ms"])
    if "interleaved" in result:
        took = result["interleaved"].pop("latency_ms")
        for name, values in took.items():
            result["interleaved"][f"{name}_ms"] = percentiles(values)
        result["interleaved"]["node_over_chroma_p50"] = round(
            percentiles(took["node"])["p50"] / percentiles(took["chroma"])["p50"], 3
        )
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
    with running_node(data_dir) as (url, pid):
        status = httpx.get(f"{url}/v1/status").json()
        dense = node_queries(url, queries, "dense", cid_to_id)
        dense_vec = node_queries(url, queries, "dense", cid_to_id, qv)
        dense_lean = node_queries(url, queries, "dense", cid_to_id, qv, LEAN)
        hybrid = node_queries(url, queries, "hybrid", cid_to_id)
        loaded_rss = rss_mib(pid)
        lean = query_bodies(queries, "dense", qv, LEAN)
        chroma_result = chroma(ids, vectors, qv, args.dataset, url, lean)
    exact = ids[np.argsort(-(qv @ vectors.T), axis=1)[:, :10]]

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
