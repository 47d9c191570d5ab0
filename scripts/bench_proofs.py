"""Proof-carrying retrieval: the cost of checking a 10-hit answer without trusting the node.

    .venv/bin/python scripts/bench_proofs.py [--facts 300] [--queries 50]

A real node on its local anvil (instant mining, anchor batches closed after 1 s) takes SciFact
sentences and anchors them; then, pinned to one core, for the same SciFact claims (k = 10):

1. **proof-carrying**: ``POST /v1/query`` with ``proofs: true``, and the client's offline check
   of the whole answer (``node.proofs.check_result`` against a warm root cache filled from the
   chain's ``Anchored`` events: CID recomputed, record compared, signer recovered, Merkle proof
   folded, root looked up). No request to anyone during the check.
2. **baseline, the path before** (same run): per hit ``GET /v1/facts/{cid}/provenance`` from
   the node, then ``api.verification.verify_bundle`` against the chain (``getAnchor``, the
   ``Anchored`` event, ``verifyFact``): 10 node requests plus the chain calls per answer.

Also the size of a 10-hit answer with and without proofs, the root cache's cold fill from the
chain, and its file size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _bench import (
    ROOT,
    machine,
    percentiles,
    report,
    running_node,
    scifact_test_queries,
    synthetic_facts,
)

sys.path.insert(0, str(ROOT))

from api.proof_check import ResultVerifier, all_verified
from api.verification import verify_bundle
from node.proofs import check_result

NODE_ENV = {"KNOWHUB_ANCHOR_BATCH_AGE": "1", "KNOWHUB_P2P_LISTEN": "off"}


def load(url: str, n: int) -> list[str]:
    facts = [{"text": f["text"]} for f in synthetic_facts(n)]
    cids: list[str] = []
    with httpx.Client(base_url=url, timeout=300) as client:
        for start in range(0, n, 256):
            got = client.post("/v1/facts/batch", json={"facts": facts[start : start + 256]})
            got.raise_for_status()
            cids += [r["cid"] for r in got.json()["results"]]
        deadline = time.monotonic() + 600
        while True:
            chain = client.get("/v1/status").json()["chain"]
            if chain["anchor_queue"] == 0 and chain["open_batches"] == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"facts not anchored: {chain}")
            time.sleep(0.5)
    return cids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--facts", type=int, default=300)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})  # the client's checks on one core
    questions = list(scifact_test_queries()[0].values())[: args.queries]
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_node(Path(tmp) / "node", **NODE_ENV) as (
            url,
            _pid,
        ),
    ):
        load(url, args.facts)
        with httpx.Client(base_url=url, timeout=120) as client:
            chain = client.get("/v1/status").json()["chain"]
            rpc, registry = chain["rpc_url"], chain["registry"]
            t0 = time.perf_counter()
            verifier = ResultVerifier.from_chain(rpc, registry, cache_file=Path(tmp) / "roots.json")
            roots = verifier.refresh()
            cold_ms = (time.perf_counter() - t0) * 1000
            result: dict[str, Any] = {
                "machine": machine() + ", client pinned to one core",
                "facts": args.facts,
                "queries": len(questions),
                "root_cache": {
                    "roots": roots,
                    "cold_fill_ms": round(cold_ms, 1),
                    "file_bytes": (Path(tmp) / "roots.json").stat().st_size,
                },
            }
            result.update(measure(client, verifier, rpc, registry, questions))
    report("proofs", result)


def measure(
    client: httpx.Client,
    verifier: ResultVerifier,
    rpc: str,
    registry: str,
    questions: list[str],
) -> dict[str, Any]:
    check_ms: list[float] = []
    query_ms: list[float] = []
    baseline_ms: list[float] = []
    sizes: dict[str, list[int]] = {"with_proofs": [], "without": []}
    for question in questions:
        body = {"query": question, "k": 10, "mode": "hybrid"}
        plain = client.post("/v1/query", json=body)
        sizes["without"].append(len(plain.content))
        t0 = time.perf_counter()
        proven = client.post("/v1/query", json={**body, "proofs": True})
        query_ms.append((time.perf_counter() - t0) * 1000)
        sizes["with_proofs"].append(len(proven.content))
        answer = proven.json()
        t1 = time.perf_counter()
        checks = check_result(answer, verifier.cache)
        check_ms.append((time.perf_counter() - t1) * 1000)
        if not all_verified(checks) or len(checks) != 10:
            raise RuntimeError(f"not all verified: {checks}")
        t2 = time.perf_counter()
        for hit in plain.json()["results"]:
            bundle = client.get(f"/v1/facts/{hit['cid']}/provenance").json()
            if not verify_bundle(bundle, rpc, registry, expected_registry=registry).verified:
                raise RuntimeError(f"baseline did not verify {hit['cid']}")
        baseline_ms.append((time.perf_counter() - t2) * 1000)
    check, baseline = percentiles(check_ms), percentiles(baseline_ms)
    return {
        "verify_10_hits_offline_ms": check,
        "query_with_proofs_ms": percentiles(query_ms),
        "baseline_10_provenance_requests_and_chain_calls_ms": baseline,
        "speedup_p50": round(baseline["p50"] / check["p50"], 1),
        "answer_bytes_p50": {k: sorted(v)[len(v) // 2] for k, v in sizes.items()},
    }


if __name__ == "__main__":
    main()
