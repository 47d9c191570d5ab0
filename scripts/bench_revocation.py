"""Revocation benchmark on a 5-node line (scripts/network.py), each figure beside a baseline
measured in the same run.

    .venv/bin/python scripts/bench_revocation.py [--nodes 5] [--revocations 50] [--queries 10000]

1. Propagation: ``--revocations`` signed facts are contributed at node 1 and reach node 5; then
   each is revoked at node 1 (``DELETE /v1/facts/{cid}`` with the contributor's tombstone) and
   the time until node 5's keyword search no longer returns it is measured (polled every 10 ms).
   Baseline: the time until node 5 *finds* a new fact contributed at node 1, same network, same
   polling, measured just before.
2. No resurrection: ``--queries`` queries at node 5 (the revoked facts' own texts, cycling
   through keyword, dense and hybrid, k=10) count the revoked CIDs they return (must be 0);
   the same queries on the baseline facts count how often their fact is found (the check
   that the queries can find what they look for).
3. Gas: batches of exactly ``--revocations`` records (KNOWHUB_ANCHOR_BATCH_SIZE): gas per
   record of the tombstone batch against the fact batch of the same size.
"""

from __future__ import annotations

import argparse
import shutil
import time
from typing import Any

import httpx
from _bench import OUT, machine, percentiles, report
from network import LocalNetwork, rpc

from api.client import NodeClient
from node.facts import make_fact
from node.signing import SigningKey

MODES = ("keyword", "dense", "hybrid")


def signed(key: SigningKey, text: str) -> dict[str, Any]:
    fact = make_fact(text, {"bench": "revocation"}, key.address)
    return {
        "text": text,
        "metadata": {"bench": "revocation"},
        "contributor": key.address,
        "signature": key.sign_cid(fact.cid),
    }


def returns(url: str, text: str, cid: str, mode: str = "keyword") -> bool:
    body = {"query": text, "k": 10, "mode": mode}
    hits = httpx.post(f"{url}/v1/query", json=body, timeout=60).json()["results"]
    return cid in [h["cid"] for h in hits]


def wait(check: Any, timeout: float = 300.0) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError("condition not met")
        time.sleep(0.01)
    return time.perf_counter() - started


def anchored_tx(url: str, cid: str) -> str | None:
    prov = httpx.get(f"{url}/v1/facts/{cid}/provenance", timeout=60).json()
    return prov.get("tx_hash") if prov.get("status") == "anchored" else None


def gas_per_record(rpc_url: str, tx_hash: str, count: int) -> float:
    receipt = rpc(rpc_url, "eth_getTransactionReceipt", tx_hash)
    return int(receipt["gasUsed"], 16) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--revocations", type=int, default=50)
    parser.add_argument("--queries", type=int, default=10_000)
    args = parser.parse_args()
    n = args.revocations
    key = SigningKey.generate()
    directory = OUT / "revocation-network"
    shutil.rmtree(directory, ignore_errors=True)
    env = {
        "KNOWHUB_SYNC_INTERVAL": "30",
        "KNOWHUB_ANCHOR_BATCH_SIZE": str(n),
        "KNOWHUB_ANCHOR_BATCH_AGE": "3600",
    }
    stamp = int(time.time())
    with LocalNetwork(args.nodes, directory, extra_env=env) as net:
        first, last = net.members[0].url, net.members[-1].url
        time.sleep(3)  # meshes form on the first heartbeats
        # baseline: a new fact from node 1 found at node 5 (these also fill one batch)
        baseline: list[float] = []
        kept: list[tuple[str, str]] = []
        for i in range(n):
            text = f"Baseline fact {i} of run {stamp}: kept, never revoked."
            started = time.perf_counter()
            cid = httpx.post(f"{first}/v1/facts", json=signed(key, text), timeout=60).json()["cid"]
            wait(lambda text=text, cid=cid: returns(last, text, cid))
            baseline.append(time.perf_counter() - started)
            kept.append((cid, text))
        victims: list[tuple[str, str]] = []
        for i in range(n):
            text = f"Doomed fact {i} of run {stamp}: revoked by its contributor."
            cid = httpx.post(f"{first}/v1/facts", json=signed(key, text), timeout=60).json()["cid"]
            victims.append((cid, text))
        for cid, text in victims:
            wait(lambda text=text, cid=cid: returns(last, text, cid))
        revocation: list[float] = []
        tombstones: list[str] = []
        with NodeClient(first) as client:
            for cid, text in victims:
                started = time.perf_counter()
                tombstones.append(client.revoke(cid, key=key, reason="benchmark").tombstone)
                wait(lambda text=text, cid=cid: not returns(last, text, cid))
                revocation.append(time.perf_counter() - started)
        gone_410 = sum(
            httpx.get(f"{last}/v1/facts/{cid}", timeout=60).status_code == 410 for cid, _ in victims
        )
        # no resurrection: every revoked text queried again and again at the far end
        doomed = {cid for cid, _ in victims}
        leaked = 0
        started = time.perf_counter()
        for q in range(args.queries):
            _, text = victims[q % n]
            body = {"query": text, "k": 10, "mode": MODES[q % len(MODES)]}
            hits = httpx.post(f"{last}/v1/query", json=body, timeout=60).json()["results"]
            leaked += sum(1 for h in hits if h["cid"] in doomed)
        queries_s = time.perf_counter() - started
        found_kept = sum(
            returns(last, text, cid, MODES[i % len(MODES)]) for i, (cid, text) in enumerate(kept)
        )
        # gas: the tombstone batch and a fact batch of the same size
        wait(lambda: anchored_tx(first, tombstones[-1]) is not None, timeout=600)
        tomb_tx = anchored_tx(first, tombstones[0])
        fact_tx = anchored_tx(first, kept[0][0])
        assert tomb_tx is not None and fact_tx is not None
        gas = {
            "batch_records": n,
            "fact_batch_gas_per_record_baseline": round(gas_per_record(net.rpc_url, fact_tx, n)),
            "tombstone_batch_gas_per_record": round(gas_per_record(net.rpc_url, tomb_tx, n)),
        }
    result = {
        "machine": machine(),
        "nodes": args.nodes,
        "topology": "line",
        "propagation_s": {
            "new_fact_found_at_last_node_baseline": percentiles(baseline),
            "revoked_fact_gone_at_last_node": percentiles(revocation),
            "p50_ratio_revocation_vs_fact": round(
                percentiles(revocation)["p50"] / percentiles(baseline)["p50"], 2
            ),
        },
        "after_revocation": {
            "queries_at_last_node": args.queries,
            "revoked_facts_returned": leaked,
            "revoked_facts_answering_410": f"{gone_410}/{n}",
            "queries_per_s": round(args.queries / queries_s, 1),
            "kept_facts_found_by_the_same_kind_of_query": f"{found_kept}/{n}",
        },
        "gas": gas,
    }
    report("revocation", result)


if __name__ == "__main__":
    main()
