"""Network benchmark: propagation along a 5-node line, catch-up after downtime, CPU per
relayed fact, each against a baseline measured in the same run.

    .venv/bin/python scripts/bench_p2p.py [--nodes 5] [--facts 50] [--catchup 5000]

1. Propagation: one fact at a time POSTed to node 1; time until POST /v1/query on the last
   node returns it (polled every 10 ms). Baseline: the same measurement on node 1 itself
   (contribute and find locally), which every remote figure includes.
2. Catch-up: the last node is stopped, ``--catchup`` facts (SciFact sentences) are POSTed to
   node 1 in batches of 256, the node is restarted; time until its fact-set digest equals
   node 1's. Baseline: node 1's own ingest of the same facts.
3. CPU per relayed fact: CPU seconds (user + system, /proc) of node 3, a pure relay in the
   middle of the line, while the catch-up facts travel by gossip; against node 1's CPU per
   fact for ingesting them. Both embed every fact with their own model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import httpx
from _bench import OUT, machine, percentiles, report, synthetic_facts
from network import LocalNetwork

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def digest(url: str) -> str:
    return str(httpx.get(f"{url}/v1/status", timeout=60).json()["p2p"]["fact_set_digest"])


def time_to_find(writer: str, reader: str, text: str) -> float:
    started = time.perf_counter()
    cid = httpx.post(f"{writer}/v1/facts", json={"text": text}, timeout=60).json()["cid"]
    while True:
        hits = httpx.post(
            f"{reader}/v1/query", json={"query": text, "k": 1, "mode": "keyword"}, timeout=60
        ).json()["results"]
        if hits and hits[0]["cid"] == cid:
            return time.perf_counter() - started
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--facts", type=int, default=50)
    parser.add_argument("--catchup", type=int, default=5000)
    args = parser.parse_args()
    directory = OUT / "p2p-network"
    shutil.rmtree(directory, ignore_errors=True)
    env = {"KNOWHUB_SYNC_INTERVAL": "30"}
    with LocalNetwork(args.nodes, directory, extra_env=env) as net:
        first, last = net.members[0].url, net.members[-1].url
        time.sleep(3)  # meshes form on the first heartbeats
        local = [
            time_to_find(first, first, f"local probe {i} {time.time()}") for i in range(args.facts)
        ]
        remote = [
            time_to_find(first, last, f"remote probe {i} {time.time()}") for i in range(args.facts)
        ]
        relay = net.members[len(net.members) // 2]
        origin = net.members[0]
        facts = synthetic_facts(args.catchup)
        net.members[-1].stop()
        assert origin.proc is not None and relay.proc is not None
        cpu0 = {m.name: cpu_seconds(m.proc.pid) for m in (origin, relay) if m.proc}
        started = time.perf_counter()
        for start in range(0, len(facts), 256):
            httpx.post(
                f"{first}/v1/facts/batch", json={"facts": facts[start : start + 256]}, timeout=600
            ).raise_for_status()
        ingest_s = time.perf_counter() - started
        while digest(relay.url) != digest(first):
            time.sleep(0.2)
        relayed_s = time.perf_counter() - started
        cpu = {m.name: cpu_seconds(m.proc.pid) - cpu0[m.name] for m in (origin, relay) if m.proc}
        net.members[-1].start()
        restarted = time.perf_counter()
        net.members[-1].wait_healthy()
        healthy = time.perf_counter()
        while digest(last) != digest(first):
            time.sleep(0.2)
        caught_up = time.perf_counter()
    result = {
        "machine": machine(),
        "nodes": args.nodes,
        "topology": "line",
        "propagation_s": {
            "local_contribute_to_found_baseline": percentiles(local),
            f"node1_to_node{args.nodes}": percentiles(remote),
            "p50_ratio_remote_vs_local": round(
                percentiles(remote)["p50"] / percentiles(local)["p50"], 2
            ),
        },
        "catchup": {
            "facts": args.catchup,
            "origin_ingest_facts_per_s_baseline": round(args.catchup / ingest_s, 1),
            "relay_received_all_after_s": round(relayed_s, 1),
            "restart_to_healthy_s": round(healthy - restarted, 1),
            "healthy_to_same_digest_s": round(caught_up - healthy, 1),
            "catchup_facts_per_s": round(args.catchup / (caught_up - healthy), 1),
        },
        "cpu_ms_per_fact": {
            "origin_ingest_baseline": round(1000 * cpu[origin.name] / args.catchup, 2),
            "relay": round(1000 * cpu[relay.name] / args.catchup, 2),
        },
    }
    report("p2p", result)


if __name__ == "__main__":
    main()
