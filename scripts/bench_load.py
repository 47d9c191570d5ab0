"""Queries come first: hybrid query latency on an idle node vs the same node under a
saturating batch writer, in one run, plus what writers beyond the ingest bound are told.

    .venv/bin/python scripts/bench_load.py                 # the RELIABILITY.md figures
    .venv/bin/python scripts/bench_load.py --preload 500 --queries 60   # quick look

Phases, all against one real node (uvicorn, real model, SQLite, FAISS, local anvil; p2p off):
1. preload ``--preload`` SciFact abstracts;
2. idle: ``--queries`` hybrid queries (SciFact test claims), one at a time;
3. saturated: ``--writers`` clients post batches of 64 abstracts back to back (the ingest
   lane is always full) while the same queries run again, one at a time;
4. overload: ``--flood`` more writers join; every write answer is counted: 200, 503 with
   ``Retry-After`` (expected beyond the bound), other statuses, and client timeouts
   (expected: none).
The figure of merit is the ratio of hybrid p50 saturated / idle (goal <= 2).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from _bench import (
    OUT,
    ingest,
    machine,
    percentiles,
    report,
    running_node,
    scifact_facts,
    scifact_test_queries,
)


def run_queries(url: str, queries: list[str]) -> list[float]:
    times = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for text in queries:
            t0 = time.perf_counter()
            reply = client.post("/v1/query", json={"query": text, "k": 10, "mode": "hybrid"})
            times.append((time.perf_counter() - t0) * 1000)
            if reply.status_code != 200:
                raise RuntimeError(f"query failed: {reply.status_code} {reply.text[:200]}")
    return times


class Writer(threading.Thread):
    """Posts batches of 64 abstracts back to back until stopped; counts every outcome."""

    def __init__(self, url: str, docs: list[dict[str, Any]], tag: str, timeout: float) -> None:
        super().__init__(daemon=True)
        self.url, self.docs, self.tag, self.timeout = url, docs, tag, timeout
        self.stop = threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.facts_acked = 0
        self.retry_after: list[float] = []

    def run(self) -> None:
        n = 0
        with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
            while not self.stop.is_set():
                batch = [
                    {"text": f"{self.docs[(n + i) % len(self.docs)]['text']} [{self.tag}-{n + i}]"}
                    for i in range(64)
                ]
                n += 64
                try:
                    reply = client.post("/v1/facts/batch", json={"facts": batch})
                except httpx.TimeoutException:
                    self.outcomes["timeout"] += 1
                    continue
                if reply.status_code == 200:
                    self.outcomes["200"] += 1
                    self.facts_acked += reply.json()["created"]
                elif reply.status_code == 503 and "retry-after" in reply.headers:
                    self.outcomes["503+retry-after"] += 1
                    self.retry_after.append(float(reply.headers["retry-after"]))
                    # a well-behaved client waits as told (capped so the phase keeps pressure)
                    self.stop.wait(min(float(reply.headers["retry-after"]), 2.0))
                else:
                    self.outcomes[str(reply.status_code)] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preload", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument("--flood", type=int, default=15)
    parser.add_argument("--flood-seconds", type=float, default=60.0)
    parser.add_argument("--client-timeout", type=float, default=30.0)
    parser.add_argument("--data-dir", type=Path, default=OUT / "load-data")
    args = parser.parse_args()
    import shutil

    shutil.rmtree(args.data_dir, ignore_errors=True)
    facts = scifact_facts()
    queries = list(scifact_test_queries()[0].values())[: args.queries]
    result: dict[str, Any] = {"machine": machine(), "command": "scripts/bench_load.py"}
    result.update({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()})
    with running_node(args.data_dir, KNOWHUB_P2P_LISTEN="off") as (url, _pid):
        ingest(url, facts[: args.preload], batch=64)
        run_queries(url, queries[:20])  # warm-up
        idle = run_queries(url, queries)
        writers = [Writer(url, facts, f"w{i}", args.client_timeout) for i in range(args.writers)]
        for w in writers:
            w.start()
        time.sleep(5)  # let the ingest lane fill
        status = httpx.get(f"{url}/v1/status", timeout=30).json()
        busy = run_queries(url, queries)
        status_busy = httpx.get(f"{url}/v1/status", timeout=30).json()
        flood = [Writer(url, facts, f"f{i}", args.client_timeout) for i in range(args.flood)]
        for w in flood:
            w.start()
        flooded = run_queries(url, queries[: max(20, len(queries) // 2)])
        time.sleep(max(0.0, args.flood_seconds - sum(flooded) / 1000))
        for w in writers + flood:
            w.stop.set()
        for w in writers + flood:
            w.join(timeout=args.client_timeout + 30)
    outcomes: Counter[str] = Counter()
    for w in writers + flood:
        outcomes.update(w.outcomes)
    retry = [r for w in writers + flood for r in w.retry_after]
    result.update(
        idle_ms=percentiles(idle),
        saturated_ms=percentiles(busy),
        flooded_ms=percentiles(flooded),
        ratio_p50=percentiles(busy)["p50"] / percentiles(idle)["p50"],
        ratio_p99=percentiles(busy)["p99"] / percentiles(idle)["p99"],
        ratio_p50_flooded=percentiles(flooded)["p50"] / percentiles(idle)["p50"],
        ingest_status_when_saturated=status.get("ingest"),
        ingest_status_after_queries=status_busy.get("ingest"),
        write_outcomes=dict(outcomes),
        retry_after_s={"min": min(retry), "max": max(retry)} if retry else None,
        facts_acked_under_load=sum(w.facts_acked for w in writers + flood),
    )
    report("load", result)


if __name__ == "__main__":
    main()
