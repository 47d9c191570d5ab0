"""What the MCP layer costs an agent: search_knowledge over MCP vs POST /v1/query over REST.

    .venv/bin/python scripts/bench_mcp.py [--facts 1000] [--queries 200]

One node with SciFact abstracts; the same SciFact test queries (k=5, hybrid, so the model
embeds every query) sent three ways, one at a time, in the same run:
1. baseline: POST /v1/query with httpx (one keep-alive connection);
2. MCP over Streamable HTTP at /mcp with the official SDK's client (one session);
3. MCP over stdio: the SDK's client launching ``knowhub mcp --url NODE`` (which calls REST).
Also the first hit must be identical across the three (same ranking through every path).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from typing import Any

import anyio
import httpx
from _bench import OUT, ROOT, machine, percentiles, report, running_node, scifact_facts
from _bench import scifact_test_queries as test_queries
from mcp import Client, StdioServerParameters


async def run_mcp(client: Client, queries: list[str]) -> tuple[list[float], list[str]]:
    times, tops = [], []
    for q in queries:
        started = time.perf_counter()
        result = await client.call_tool("search_knowledge", {"query": q, "k": 5})
        times.append(time.perf_counter() - started)
        assert not result.is_error, result.content
        tops.append(result.structured_content["results"][0]["cid"])
    return times, tops


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--facts", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    queries = list(test_queries()[0].values())[: args.queries]
    directory = OUT / "mcp"
    shutil.rmtree(directory, ignore_errors=True)
    env = {"KNOWHUB_LOCAL_CHAIN": "false", "KNOWHUB_P2P_LISTEN": "off"}
    with running_node(directory / "node", **env) as (url, _):
        with httpx.Client(base_url=url, timeout=120) as rest:
            facts = scifact_facts()[: args.facts]
            for i in range(0, len(facts), 256):
                rest.post("/v1/facts/batch", json={"facts": facts[i : i + 256]}).raise_for_status()
            for q in queries[:10]:  # warm-up
                rest.post("/v1/query", json={"query": q, "k": 5})
            rest_times, rest_tops = [], []
            for q in queries:
                started = time.perf_counter()
                reply = rest.post("/v1/query", json={"query": q, "k": 5})
                rest_times.append(time.perf_counter() - started)
                rest_tops.append(reply.json()["results"][0]["cid"])

        async def over_mcp() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with Client(f"{url}/mcp") as client:
                await run_mcp(client, queries[:10])
                out["http"] = await run_mcp(client, queries)
            stdio = StdioServerParameters(
                command=sys.executable, args=["-m", "api.cli", "mcp", "--url", url], cwd=str(ROOT)
            )
            async with Client(stdio) as client:
                await run_mcp(client, queries[:10])
                out["stdio"] = await run_mcp(client, queries)
            return out

        mcp = anyio.run(over_mcp)
    base = percentiles([t * 1000 for t in rest_times])
    result: dict[str, Any] = {
        "machine": machine(),
        "facts": len(facts),
        "queries": len(queries),
        "rest_query_ms (baseline)": base,
    }
    for name, (times, tops) in mcp.items():
        ms = percentiles([t * 1000 for t in times])
        result[f"mcp_{name}_ms"] = ms
        result[f"mcp_{name}_p50_ratio"] = round(ms["p50"] / base["p50"], 3)
        result[f"mcp_{name}_p50_added_ms"] = round(ms["p50"] - base["p50"], 3)
        same = sum(a == b for a, b in zip(tops, rest_tops, strict=True))
        result[f"mcp_{name}_same_top_hit"] = same
    report("mcp", result)


if __name__ == "__main__":
    main()
