"""Cost of the operations layer: API keys, rate limits, JSON access logs, request metrics.

    .venv/bin/python scripts/bench_ops.py [--requests 2000] [--facts 200]

Two nodes on the same data: *baseline* with no keys, no rate limits and log level warning (no
access lines), and *operated* as compose runs it: API keys, read and write rate limits that
are checked on every request but set too high to refuse any, CORS on, JSON logs at info (one
access line per request, written to a file). Both always keep the request id and the request
metrics. Rounds of requests alternate between the two nodes so drift hits both alike:
GET /v1/facts/{cid}, POST /v1/query in keyword mode (no model in the path, so the HTTP layer
is a larger share), and POST /v1/facts of a fact already stored (a write that needs the key
and returns "exists" without embedding). Then the time of a /metrics scrape.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
from _bench import OUT, machine, percentiles, report, running_node, scifact_facts

KEY = "bench-ops-key-0123456789abcdef"


def timed(client: httpx.Client, method: str, path: str, body: Any = None) -> float:
    started = time.perf_counter()
    reply = client.request(method, path, json=body)
    elapsed = time.perf_counter() - started
    assert reply.status_code < 300, reply.text
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint and node")
    parser.add_argument("--facts", type=int, default=200)
    args = parser.parse_args()
    facts = [{"text": f["text"][:500]} for f in scifact_facts()[: args.facts]]
    directory = OUT / "ops"
    shutil.rmtree(directory, ignore_errors=True)
    operated_env = {
        "KNOWHUB_API_KEYS": KEY,
        "KNOWHUB_RATE_LIMIT_READS": "1000000/second",
        "KNOWHUB_RATE_LIMIT_WRITES": "1000000/second",
        "KNOWHUB_CORS_ORIGINS": "https://example.org",
        "KNOWHUB_LOG_FORMAT": "json",
        "KNOWHUB_LOCAL_CHAIN": "false",
        "KNOWHUB_P2P_LISTEN": "off",
    }
    base_env = {"KNOWHUB_LOCAL_CHAIN": "false", "KNOWHUB_P2P_LISTEN": "off"}
    with contextlib.ExitStack() as stack:
        base_url, _ = stack.enter_context(running_node(directory / "baseline", **base_env))
        ops_url, _ = stack.enter_context(
            running_node(directory / "operated", log_level="info", **operated_env)
        )
        clients = {
            "baseline": stack.enter_context(httpx.Client(base_url=base_url, timeout=60)),
            "operated": stack.enter_context(
                httpx.Client(
                    base_url=ops_url, timeout=60, headers={"authorization": f"Bearer {KEY}"}
                )
            ),
        }
        cids: dict[httpx.Client, list[str]] = {}  # each operator signs, so CIDs differ
        for client in clients.values():
            reply = client.post("/v1/facts/batch", json={"facts": facts})
            reply.raise_for_status()
            cids[client] = [r["cid"] for r in reply.json()["results"]]
        endpoints = {
            "GET /v1/facts/{cid}": lambda c, i: timed(
                c, "GET", f"/v1/facts/{cids[c][i % len(facts)]}"
            ),
            "POST /v1/query (keyword)": lambda c, i: timed(
                c,
                "POST",
                "/v1/query",
                {"query": facts[i % len(facts)]["text"][:80], "k": 5, "mode": "keyword"},
            ),
            "POST /v1/facts (exists)": lambda c, i: timed(
                c, "POST", "/v1/facts", facts[i % len(facts)]
            ),
        }
        samples: dict[str, dict[str, list[float]]] = {
            e: {n: [] for n in clients} for e in endpoints
        }
        rounds = 10
        for endpoint, call in endpoints.items():
            for _ in range(20):  # warm-up
                for client in clients.values():
                    call(client, 0)
            for r in range(rounds):
                for name, client in clients.items():
                    for i in range(args.requests // rounds):
                        samples[endpoint][name].append(call(client, r * 1000 + i))
        scrape = [timed(clients["operated"], "GET", "/metrics") for _ in range(200)]
    result: dict[str, Any] = {"machine": machine(), "requests_per_endpoint": args.requests}
    for endpoint, by_node in samples.items():
        base = percentiles([s * 1000 for s in by_node["baseline"]])
        ops = percentiles([s * 1000 for s in by_node["operated"]])
        result[endpoint] = {
            "baseline_ms": base,
            "operated_ms": ops,
            "p50_ratio": round(ops["p50"] / base["p50"], 3),
            "p50_added_ms": round(ops["p50"] - base["p50"], 3),
        }
    result["GET /metrics (operated)_ms"] = percentiles([s * 1000 for s in scrape])
    log = Path(directory / "operated.log")
    result["access_log_bytes_per_request"] = round(
        log.stat().st_size / max(1, sum(len(v["operated"]) for v in samples.values())), 1
    )
    report("ops", result)


if __name__ == "__main__":
    main()
