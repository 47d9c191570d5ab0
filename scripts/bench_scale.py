"""A million facts on one node: build, restart, memory, disk, query latency and recall.

    .venv/bin/python scripts/bench_scale.py --n 1000000 --dir /tmp/knowhub-scale

Texts: SciFact abstract sentences and clauses (``_bench.synthetic_texts``), then pairs of
them ("A B") until there are n. Vectors: the node's default embedder (ONNX int8) embeds every
base text once (cached in bench-out/); a pair gets the normalised sum of its two vectors,
because embedding a million texts takes this 2-core machine hours (bench_ingest.py measures
embedding throughput; this measures what a million stored facts cost). The facts go through
the node's own ingest use case in-process (records, CIDs, catalog, blockstore, keyword and
vector indexes, the block publisher), with only the embedder replaced by that table
(``build_node(settings, embedder=...)``); no chain and no network. Then a real
``knowhub node`` process restarts on the directory and is measured over HTTP:

- restart to healthy (``/healthz`` 200 and the block publication backlog empty);
- RSS after the queries, and an empty node's RSS in the same run (per-fact figures use the
  difference, and the total);
- disk per fact, per file;
- p50/p99 of vector-in dense queries and of text hybrid queries (k=10, ``include`` cid and
  score: the lean answer), 300 SciFact test claims each, after 30 untimed ones of each kind;
- recall@10 of the vector-in answers against exact float search over all n vectors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from _bench import (
    JSON,
    OUT,
    machine,
    percentiles,
    report,
    rss_mib,
    running_node,
    scifact_test_queries,
    synthetic_texts,
)

from index.onnx_embedder import OnnxEmbedder
from index.onnx_export import default_onnx_dir, export_model
from index.sqlite_catalog import SqliteCatalog
from node.bootstrap import build_node
from node.errors import KnowhubError
from node.facts import make_fact
from node.settings import Settings

BUILD_BATCH = 1000
#: Queries of each kind sent (and not timed) before the timed ones, after the restart.
WARM_UP = 30
NODE_ENV = {"KNOWHUB_LOCAL_CHAIN": "false", "KNOWHUB_P2P_LISTEN": "off"}


class TableEmbedder:
    """The Embedder port answering from a table of known texts (ingest only)."""

    def __init__(self, model_name: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._model_name = model_name
        self._row = {t: i for i, t in enumerate(texts)}
        self._vectors = vectors

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return int(self._vectors.shape[1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out: np.ndarray = self._vectors[[self._row[t] for t in texts]]
        return out


def corpus(n: int, embedder: OnnxEmbedder) -> tuple[list[str], np.ndarray]:
    """n distinct texts and their unit vectors (pairs: the normalised sum). The base texts are
    a prefix of the largest synthetic set, whose vectors are cached across runs and sizes."""
    every = synthetic_texts(10**7)
    cache = OUT / f"scale-base-{len(every)}.npy"
    if cache.exists():
        vectors = np.load(cache)
    else:
        started = time.perf_counter()
        vectors = np.concatenate(
            [embedder.embed(every[i : i + 256]) for i in range(0, len(every), 256)]
        ).astype(np.float32)
        print(f"embedded {len(every)} base texts in {time.perf_counter() - started:.0f} s")
        OUT.mkdir(exist_ok=True)
        np.save(cache, vectors)
    base = every[: min(n, len(every))]
    vectors = vectors[: len(base)]
    texts, rows = list(base), [vectors]
    rng = np.random.default_rng(18)
    while len(texts) < n:
        want = n - len(texts)
        a = rng.integers(0, len(base), want)
        b = rng.integers(0, len(base), want)
        seen = set(texts)
        pairs = [(i, j) for i, j in zip(a.tolist(), b.tolist(), strict=True) if i != j]
        fresh = []
        for i, j in pairs:  # distinct texts only, within this round too
            text = f"{base[i]} {base[j]}"
            if text not in seen:
                seen.add(text)
                fresh.append((i, j))
        texts += [f"{base[i]} {base[j]}" for i, j in fresh]
        summed = vectors[[i for i, _ in fresh]] + vectors[[j for _, j in fresh]]
        rows.append((summed / np.linalg.norm(summed, axis=1, keepdims=True)).astype(np.float32))
    return texts[:n], np.concatenate(rows)[:n]


async def build(
    data_dir: Path, texts: list[str], table: TableEmbedder, compression: str
) -> tuple[list[str], float]:
    settings = Settings(
        data_dir=data_dir,
        local_chain=False,
        p2p_listen="off",
        vector_compression=compression,  # type: ignore[arg-type]
    )
    node = build_node(settings, embedder=table)
    await node.start()
    cids: list[str] = []
    started = time.perf_counter()
    try:
        for start in range(0, len(texts), BUILD_BATCH):
            facts = [make_fact(t) for t in texts[start : start + BUILD_BATCH]]
            for result in await node.contribute_many(facts):
                if isinstance(result, KnowhubError):
                    raise result
                cids.append(result.cid)
            if (start // BUILD_BATCH) % 50 == 0:
                rate = len(cids) / (time.perf_counter() - started)
                print(f"  {len(cids)} facts stored ({rate:.0f}/s)", flush=True)
        # every block in the content store too: a build is done when nothing is queued
        while (await node.status()).publication_backlog:  # noqa: ASYNC110 (polls a count)
            await asyncio.sleep(0.5)
        took = time.perf_counter() - started
    finally:
        await node.close()
    return cids, took


def timed_queries(url: str, bodies: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Any]]:
    """Client-measured latency and the node's own embed / search split (``Server-Timing``)."""
    answers: list[Any] = []
    took: list[float] = []
    parts: dict[str, list[float]] = {"embed": [], "search": []}
    with httpx.Client(base_url=url, timeout=120) as client:
        for body in bodies[:30]:  # warm up
            client.post("/v1/query", json=body).raise_for_status()
        for body in bodies:
            t0 = time.perf_counter()
            response = client.post("/v1/query", content=orjson.dumps(body), headers=JSON)
            took.append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()
            answers.append(orjson.loads(response.content))
            for part in response.headers["server-timing"].split(","):
                name, dur = part.strip().split(";dur=")
                parts[name].append(float(dur))
    figures: dict[str, Any] = {"total": percentiles(took)}
    figures.update({f"{name} (server)": percentiles(v) for name, v in parts.items()})
    return figures, answers


def disk(data_dir: Path, n: int) -> dict[str, Any]:
    files = {
        p.relative_to(data_dir).as_posix(): p.stat().st_size
        for p in data_dir.rglob("*")
        if p.is_file()
    }
    total = sum(files.values())
    big = {k: round(v / n, 1) for k, v in sorted(files.items()) if v > 1 << 20}
    return {"total_mib": round(total / 2**20, 1), "bytes_per_fact": round(total / n, 1), **big}


def searchable(data_dir: Path, cids: list[str]) -> np.ndarray:
    """Which of ``cids`` search can return: not the near-duplicates the node links to an
    earlier fact with the same words (``index.sqlite_duplicates``)."""
    catalog = SqliteCatalog(data_dir / "catalog.sqlite3")
    try:
        rows = catalog.existing(cids)
        kept = set(catalog.ids().tolist())
    finally:
        catalog.close()
    return np.array([rows.get(cid) in kept for cid in cids], dtype=bool)


def measure(
    data_dir: Path, cids: list[str], vectors: np.ndarray, compression: str, rank: str
) -> dict[str, Any]:
    env = {**NODE_ENV, "KNOWHUB_VECTOR_COMPRESSION": compression}
    queries = list(scifact_test_queries()[0].values())
    embedder = OnnxEmbedder(default_onnx_dir(), quantized=True, threads=1)
    qv = np.stack([embedder.embed([q])[0] for q in queries])
    lean = ["cid", "score"]
    dense = [
        {"query": q, "vector": v.tolist(), "mode": "dense", "k": 10, "include": lean, "rank": rank}
        for q, v in zip(queries, qv, strict=True)
    ]
    hybrid = [
        {"query": q, "mode": "hybrid", "k": 10, "include": lean, "rank": rank} for q in queries
    ]
    text_dense = [
        {"query": q, "mode": "dense", "k": 10, "include": lean, "rank": rank} for q in queries
    ]
    result: dict[str, Any] = {}
    with running_node(data_dir.parent / "empty-node", **env) as (url, pid):
        timed_queries(url, hybrid[:50])
        result["empty_node_rss_mib"] = round(rss_mib(pid), 1)
    started = time.perf_counter()
    with running_node(data_dir, **env) as (url, pid):
        result["restart_to_healthy_s"] = round(time.perf_counter() - started, 2)
        status = httpx.get(f"{url}/v1/status", timeout=30).json()
        result["index"] = status.get("index", {})
        for bodies in (dense, hybrid, text_dense):  # warm-up, as bench_query does
            timed_queries(url, bodies[-WARM_UP:])
        result["vector_in_dense_ms"], answers = timed_queries(url, dense)
        result["text_hybrid_ms"], _ = timed_queries(url, hybrid)
        result["text_dense_ms"], _ = timed_queries(url, text_dense)
        result["rss_mib"] = round(rss_mib(pid), 1)
    keep = searchable(data_dir, cids)
    result["near_duplicates"] = int((~keep).sum())
    kept_cids = [c for c, k in zip(cids, keep.tolist(), strict=True) if k]
    exact = np.argsort(-(qv @ vectors[keep].T), axis=1)[:, :10]
    got = [[hit["cid"] for hit in a["results"]] for a in answers]
    recall = [
        len({kept_cids[i] for i in row} & set(hits)) / 10
        for row, hits in zip(exact, got, strict=True)
    ]
    result["recall_at_10_vs_exact_float"] = round(float(np.mean(recall)), 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/knowhub-scale"))
    parser.add_argument("--reuse", action="store_true", help="measure an existing build")
    parser.add_argument("--compression", choices=["sq8", "none"], default="sq8")
    parser.add_argument(
        "--rank",
        choices=["reputation", "relevance"],
        default="reputation",
        help="the queries' rank (the node's default: reputation; these facts are unsigned, so "
        "no contributor is trusted and every query looks 40 hits deeper)",
    )
    args = parser.parse_args()
    model_dir = default_onnx_dir()
    export_model(model_dir)
    embedder = OnnxEmbedder(model_dir, quantized=True, threads=2)
    texts, vectors = corpus(args.n, embedder)
    data_dir = args.dir / "node"
    built = args.dir / "built.json"
    if args.reuse and built.exists():
        cids = json.loads(built.read_text())["cids"]
        build_s = json.loads(built.read_text())["build_s"]
    else:
        shutil.rmtree(args.dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        table = TableEmbedder(embedder.model_name, texts, vectors)
        cids, build_s = asyncio.run(build(data_dir, texts, table, args.compression))
        built.write_text(json.dumps({"cids": cids, "build_s": build_s}))
    n = len(cids)
    result: dict[str, Any] = {
        "machine": machine(),
        "n": n,
        "compression": args.compression,
        "build": {"seconds": round(build_s), "facts_per_s": round(n / build_s)},
    }
    result.update(measure(data_dir, cids, vectors, args.compression, args.rank))
    result["disk"] = disk(data_dir, n)
    rss = result["rss_mib"] * 2**20
    result["rss_bytes_per_fact"] = round(rss / n, 1)
    result["rss_bytes_per_fact_above_empty"] = round(
        (rss - result["empty_node_rss_mib"] * 2**20) / n, 1
    )
    report(f"scale-{n}-{args.compression}", result)


if __name__ == "__main__":
    main()
