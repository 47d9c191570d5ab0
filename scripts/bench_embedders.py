"""Embedder backends side by side: torch (sentence-transformers) against ONNX Runtime fp32 and
dynamic int8, at 1 and 2 (or torch's default) threads, all on all-MiniLM-L6-v2.

    .venv/bin/python scripts/bench_embedders.py
    .venv/bin/python scripts/bench_embedders.py --sentences 500 --abstracts 200 --no-ndcg  # quick

Per backend and thread setting, each in a fresh process (so RSS and thread pools are its own):
single-query embed latency p50/p99 over the 300 SciFact test claims (after 20 warm-up
queries), batch throughput (texts/s, batch 64) over SciFact abstract sentences and over whole
abstracts (title + text, most cut at 256 tokens), and dense SciFact nDCG@10 / Recall@100 with
exact FAISS inner product over the 5,183 abstracts (what bench_quality.py's dense mode ranks;
the published figure for this model is nDCG@10 64.51). The retrieval metrics are computed at
the multi-thread setting only (--ndcg-all: at every setting): threads do not change vectors.

ONNX models come from ``index.onnx_export`` (exported first when missing or stale). Writes
bench-out/embedders.json (_bench.OUT) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _bench import (
    ROOT,
    machine,
    percentiles,
    report,
    scifact_facts,
    scifact_test_queries,
    synthetic_facts,
)

CONFIGS: dict[str, tuple[str, int]] = {
    # name: (backend, threads); torch's 0 = its default (one per core)
    "torch t1": ("torch", 1),
    "torch default": ("torch", 0),
    "onnx-fp32 t1": ("onnx-fp32", 1),
    "onnx-fp32 t2": ("onnx-fp32", 2),
    "onnx-int8 t1": ("onnx-int8", 1),
    "onnx-int8 t2": ("onnx-int8", 2),
}
NDCG_CONFIGS = ("torch default", "onnx-fp32 t2", "onnx-int8 t2")
WARMUP = 20
BATCH = 64


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _make_embedder(backend: str, threads: int, onnx_dir: Path) -> tuple[Any, int]:
    if backend == "torch":
        from index.embedder import SentenceTransformerEmbedder

        embedder: Any = SentenceTransformerEmbedder(batch_size=BATCH, torch_threads=threads)
        import torch

        return embedder, torch.get_num_threads()
    from index.onnx_embedder import OnnxEmbedder

    quantized = backend == "onnx-int8"
    return OnnxEmbedder(onnx_dir, quantized=quantized, threads=threads, batch_size=BATCH), threads


def _throughput(embedder: Any, texts: list[str]) -> float:
    started = time.perf_counter()
    embedder.embed(texts)
    return round(len(texts) / (time.perf_counter() - started), 1)


def worker(name: str, onnx_dir: Path, n_sentences: int, n_abstracts: int, ndcg: bool) -> None:
    """One configuration in this process; prints its result as the last line of JSON."""
    backend, threads = CONFIGS[name]
    load0 = os.getloadavg()[0]
    started = time.perf_counter()
    embedder, effective_threads = _make_embedder(backend, threads, onnx_dir)
    load_s = time.perf_counter() - started
    rss_loaded = _status_mib("VmRSS")

    queries, qrels = scifact_test_queries()
    claims = list(queries.values())
    for text in claims[:WARMUP]:
        embedder.embed([text])
    latencies = []
    for text in claims:
        t0 = time.perf_counter()
        embedder.embed([text])
        latencies.append((time.perf_counter() - t0) * 1000)

    facts = scifact_facts()
    sentences = [f["text"] for f in synthetic_facts(n_sentences)]
    abstracts = [f["text"] for f in facts[:n_abstracts]]
    result: dict[str, Any] = {
        "backend": backend,
        "threads": effective_threads,
        "load_s": round(load_s, 2),
        "latency_ms": {k: round(v, 2) for k, v in percentiles(latencies).items()},
        "sentences_per_s": _throughput(embedder, sentences),
        "abstracts_per_s": _throughput(embedder, abstracts),
    }
    if ndcg:
        result.update(_retrieval(embedder, facts, queries, qrels))
    result.update(
        rss_loaded_mib=rss_loaded,
        rss_peak_mib=_status_mib("VmHWM"),
        loadavg_start_end=[round(load0, 2), round(os.getloadavg()[0], 2)],
    )
    print(json.dumps(result))


def _retrieval(
    embedder: Any,
    facts: list[dict[str, Any]],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
) -> dict[str, Any]:
    import faiss
    from bench_quality import ndcg_at_10, recall_at_100

    started = time.perf_counter()
    corpus = embedder.embed([f["text"] for f in facts])
    corpus_s = time.perf_counter() - started
    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(np.ascontiguousarray(corpus, dtype=np.float32))
    qids = list(queries)
    _, found = index.search(embedder.embed([queries[q] for q in qids]), 100)
    doc_ids = [f["metadata"]["doc_id"] for f in facts]
    ndcg, recall = [], []
    for qid, row in zip(qids, found, strict=True):
        ranked = [doc_ids[i] for i in row if i >= 0]
        ndcg.append(ndcg_at_10(ranked, qrels[qid]))
        recall.append(recall_at_100(ranked, qrels[qid]))
    return {
        "ndcg@10": round(100 * sum(ndcg) / len(ndcg), 2),
        "recall@100": round(100 * sum(recall) / len(recall), 2),
        "corpus_embed_s": round(corpus_s, 1),
        "corpus_docs_per_s": round(len(facts) / corpus_s, 1),
    }


def _table(results: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'backend':16s} {'thr':>3s} {'load s':>6s} {'RSS MiB':>7s} {'p50 ms':>7s} "
        f"{'p99 ms':>7s} {'sent/s':>7s} {'abs/s':>6s} {'nDCG@10':>7s} {'R@100':>6s}"
    )
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"{name:16s} failed: {r['error']}")
            continue
        ndcg = f"{r['ndcg@10']:.2f}" if "ndcg@10" in r else "-"
        recall = f"{r['recall@100']:.2f}" if "recall@100" in r else "-"
        lines.append(
            f"{name:16s} {r['threads']:>3d} {r['load_s']:>6.2f} {r['rss_peak_mib']:>7.0f} "
            f"{r['latency_ms']['p50']:>7.2f} {r['latency_ms']['p99']:>7.2f} "
            f"{r['sentences_per_s']:>7.1f} {r['abstracts_per_s']:>6.1f} {ndcg:>7s} {recall:>6s}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=2000, help="sentences for throughput")
    parser.add_argument("--abstracts", type=int, default=2000, help="abstracts for throughput")
    parser.add_argument("--no-ndcg", action="store_true", help="skip the retrieval metrics")
    parser.add_argument("--ndcg-all", action="store_true", help="retrieval at every setting")
    parser.add_argument("--configs", nargs="*", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--onnx-dir", type=Path, default=None)
    parser.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--ndcg", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from index.onnx_export import default_onnx_dir, export_model, read_stamp

    onnx_dir: Path = args.onnx_dir or default_onnx_dir()
    if args.worker:
        worker(args.worker, onnx_dir, args.sentences, args.abstracts, args.ndcg)
        return

    started = time.perf_counter()
    export_model(onnx_dir)
    export_call_s = round(time.perf_counter() - started, 1)
    stamp = read_stamp(onnx_dir) or {}
    results: dict[str, dict[str, Any]] = {}
    for name in args.configs:
        ndcg = not args.no_ndcg and (args.ndcg_all or name in NDCG_CONFIGS)
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            name,
            "--onnx-dir",
            str(onnx_dir),
            "--sentences",
            str(args.sentences),
            "--abstracts",
            str(args.abstracts),
        ]
        print(f"== {name}{' (+ nDCG)' if ndcg else ''}", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [*cmd, "--ndcg"] if ndcg else cmd,
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        if proc.returncode:
            results[name] = {"error": proc.stderr.strip().splitlines()[-1:]}
            print(proc.stderr[-3000:], file=sys.stderr)
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(results[name]), file=sys.stderr, flush=True)

    table = _table(results)
    report(
        "embedders",
        {
            "machine": machine(),
            "onnx_dir": str(onnx_dir),
            "export": {
                "seconds": stamp.get("seconds"),
                "this_call_s": export_call_s,
                "fp32_min_cosine": stamp.get("fp32_min_cosine"),
                "int8_min_cosine": stamp.get("int8_min_cosine"),
                "onnxruntime": stamp.get("onnxruntime"),
            },
            "sentences": args.sentences,
            "abstracts": args.abstracts,
            "batch": BATCH,
            "reference_dense_ndcg@10": 64.51,
            "results": results,
            "table": table.splitlines(),
        },
    )
    print(table)


if __name__ == "__main__":
    main()
