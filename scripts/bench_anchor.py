"""Anchoring benchmark: gas per fact by batch size, contribution-to-anchored latency at the
default settings, and anchored facts/s, each against a baseline from the same run.

    .venv/bin/python scripts/bench_anchor.py [--latency-facts 40] [--throughput-facts 3000]

1. Gas: KnowledgeRegistry.anchor on a fresh anvil for batches of 1, 16, 256 and 1024 facts;
   baseline: one anchor transaction per fact. Also the gas verifyFact costs as a call.
2. Latency: single facts POSTed to a node at the default settings (batch 256 facts or 10 s,
   local anvil with instant mining) and the time until their provenance reads "anchored".
3. Throughput: short SciFact sentences POSTed in batches of 256 as fast as the node takes
   them; anchored facts/s vs acknowledged (ingest) facts/s in the same run. Then the anchoring
   pipeline alone (seal, manifest, Merkle proofs, transaction) on 20,000 already stored facts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from _bench import OUT, ROOT, free_port, machine, percentiles, report, running_node, synthetic_facts
from multiformats import CID
from web3 import Web3

sys.path.insert(0, str(ROOT))

from contracts.anvil import ANVIL_BIN
from contracts.registry import RegistryLedger, deploy_registry, load_artifact
from index.sqlite_catalog import SqliteCatalog
from node.anchoring import Anchorer, AnchorOptions
from node.content import BlockService
from node.facts import make_fact
from node.manifest import build_manifest
from node.memory import MemoryContentStore
from node.merkle import build_tree
from node.ports import NewFact
from node.provenance import BatchStatus
from node.signing import SigningKey

ANVIL_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def start_anvil() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(ANVIL_BIN), "--port", str(port), "--silent", "--chain-id", "31337"],
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    w3 = Web3(Web3.HTTPProvider(url))
    while not w3.is_connected():
        time.sleep(0.05)
    return proc, url


def gas_table(previous: str | None = None) -> dict[str, object]:
    proc, url = start_anvil()
    try:
        key = SigningKey(bytes.fromhex(ANVIL_KEY))
        registry = deploy_registry(url, key)
        ledger = RegistryLedger(url, registry, key)
        w3 = Web3(Web3.HTTPProvider(url))
        contract = w3.eth.contract(address=registry, abi=load_artifact()["abi"])
        rows = []
        for size in (1, 16, 256, 1024):
            cids = [make_fact(f"gas benchmark fact {size}-{i}").cid for i in range(size)]
            manifest, _ = build_manifest(cids)
            tree = build_tree([bytes(CID.decode(c)) for c in cids])
            tx = ledger.sign_anchor(tree.root, str(manifest.cid), size, ledger.next_nonce())
            ledger.broadcast(tx.raw)
            gas = int(w3.eth.get_transaction_receipt(tx.tx_hash)["gasUsed"])
            first = bytes(CID.decode(cids[0]))
            proof = tree.proof(first)
            verify_gas = int(contract.functions.verifyFact(first, proof, tree.root).estimate_gas())
            rows.append(
                {
                    "batch": size,
                    "tx_gas": gas,
                    "gas_per_fact": round(gas / size, 1),
                    "proof_len": len(proof),
                    "verifyFact_gas": verify_gas,
                }
            )
        per_fact_baseline = rows[0]["tx_gas"]
        for row in rows:
            row["saving_vs_one_tx_per_fact"] = round(per_fact_baseline / row["gas_per_fact"], 1)
        ledger.close()
        return {
            "rows": rows,
            "baseline_one_tx_per_fact_gas": per_fact_baseline,
            "previous_contract": previous_contract_gas(w3, previous),
        }
    finally:
        proc.terminate()
        proc.wait()


def latency(n: int, interval: float) -> dict[str, object]:
    """Single facts at a steady pace; seconds from POST to an anchored provenance, polled
    every 50 ms from a second thread while the facts are still being posted."""
    data_dir = OUT / "anchor-latency"
    shutil.rmtree(data_dir, ignore_errors=True)
    posted: dict[str, float] = {}
    done: dict[str, float] = {}
    lock = threading.Lock()
    finished = threading.Event()

    def poll(url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not finished.is_set():
                with lock:
                    waiting = list(posted.keys() - done.keys())
                for cid in waiting:
                    if client.get(f"/v1/facts/{cid}/provenance").json()["status"] == "anchored":
                        with lock:
                            done[cid] = time.perf_counter()
                with lock:
                    if len(done) == n:
                        finished.set()
                time.sleep(0.05)

    with running_node(data_dir) as (url, _pid), httpx.Client(base_url=url, timeout=60) as client:
        poller = threading.Thread(target=poll, args=(url,))
        poller.start()
        for i in range(n):
            body = {"text": f"latency fact {i} {time.time()}"}
            sent = time.perf_counter()
            cid = client.post("/v1/facts", json=body).json()["cid"]
            with lock:
                posted[cid] = sent
            time.sleep(interval)
        poller.join()
    seconds = [done[c] - posted[c] for c in posted]
    return {
        "facts": n,
        "post_interval_s": interval,
        "settings": "defaults: batch 256 facts or 10 s, local anvil",
        "seconds": percentiles(seconds) | {"max": round(max(seconds), 2)},
    }


def throughput(n: int) -> dict[str, object]:
    """Ingest + anchoring as fast as the node takes facts, against the same ingest on a node
    with anchoring off (``KNOWHUB_LOCAL_CHAIN=false``) in the same run."""
    facts = synthetic_facts(n)
    rates: dict[str, float] = {}
    anchored = 0.0
    for label, env in (("off", {"KNOWHUB_LOCAL_CHAIN": "false"}), ("on", {})):
        data_dir = OUT / f"anchor-throughput-{label}"
        shutil.rmtree(data_dir, ignore_errors=True)
        with (
            running_node(data_dir, **env) as (url, _pid),
            httpx.Client(base_url=url, timeout=600) as client,
        ):
            started = time.perf_counter()
            for start in range(0, n, 256):
                client.post(
                    "/v1/facts/batch", json={"facts": facts[start : start + 256]}
                ).raise_for_status()
            rates[label] = time.perf_counter() - started
            while label == "on":
                chain = client.get("/v1/status").json()["chain"]
                if chain["anchor_queue"] == 0 and chain["open_batches"] == 0:
                    anchored = time.perf_counter() - started
                    break
                time.sleep(0.1)
    return {
        "facts": n,
        "ingest_facts_per_s_anchoring_off": round(n / rates["off"], 1),
        "ingest_facts_per_s_anchoring_on": round(n / rates["on"], 1),
        "anchored_facts_per_s": round(n / anchored, 1),
        "ratio_anchored_vs_ingest_off": round(rates["off"] / anchored, 3),
        "last_anchor_after_last_ack_s": round(anchored - rates["on"], 2),
    }


def pipeline(n: int, batch: int) -> dict[str, object]:
    """The anchorer alone: facts already stored, nothing else running."""
    proc, url = start_anvil()
    tmp = Path(tempfile.mkdtemp())
    try:
        key = SigningKey(bytes.fromhex(ANVIL_KEY))
        ledger = RegistryLedger(url, deploy_registry(url, key), key)
        catalog = SqliteCatalog(tmp / "catalog.sqlite3")
        zero = np.zeros(384, dtype=np.float32)
        for start in range(0, n, 1000):
            catalog.insert(
                [NewFact(make_fact(f"pipeline fact {i}"), zero) for i in range(start, start + 1000)]
            )
        store = MemoryContentStore()
        anchorer = Anchorer(
            catalog, ledger, BlockService(store, catalog), AnchorOptions(batch_size=batch)
        )

        async def drain() -> None:
            while await anchorer.step(flush=True) or catalog.anchor_backlog()[0]:
                pass

        started = time.perf_counter()
        asyncio.run(drain())
        seconds = time.perf_counter() - started
        batches = catalog.batches([BatchStatus.ANCHORED])
        assert sum(b.count for b in batches) == n
        ledger.close()
        return {
            "facts": n,
            "batch": batch,
            "batches": len(batches),
            "anchored_facts_per_s": round(n / seconds, 1),
            "seconds": round(seconds, 2),
        }
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def previous_contract_gas(w3: Web3, rev: str | None) -> dict[str, object] | None:
    """The anchor gas of the registry as committed at git revision ``rev`` (a baseline in the
    same run: e.g. the contract that kept the manifest CID in storage), batch of 256."""
    if rev is None:
        return None
    artifact = json.loads(
        subprocess.run(
            ["git", "show", f"{rev}:contracts/KnowledgeRegistry.json"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    )
    sender = w3.eth.accounts[0]
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    address = w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": sender}))[
        "contractAddress"
    ]
    old = w3.eth.contract(address=address, abi=artifact["abi"])
    cids = [make_fact(f"previous contract fact {i}").cid for i in range(256)]
    manifest, _ = build_manifest(cids)
    tree = build_tree([bytes(CID.decode(c)) for c in cids])
    tx = old.functions.anchor(tree.root, str(manifest.cid), 256).transact({"from": sender})
    gas = int(w3.eth.wait_for_transaction_receipt(tx)["gasUsed"])
    return {"rev": rev, "batch": 256, "tx_gas": gas, "gas_per_fact": round(gas / 256, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-facts", type=int, default=40)
    parser.add_argument("--latency-interval", type=float, default=0.5)
    parser.add_argument("--throughput-facts", type=int, default=3072)
    parser.add_argument("--pipeline-facts", type=int, default=20_000)
    parser.add_argument(
        "--previous-contract", metavar="GIT_REV", help="also measure the registry at this rev"
    )
    parser.add_argument("--gas-only", action="store_true", help="only the gas table")
    args = parser.parse_args()
    if args.gas_only:
        report("anchor-gas", {"machine": machine(), "gas": gas_table(args.previous_contract)})
        return
    result = {
        "machine": machine(),
        "gas": gas_table(args.previous_contract),
        "pipeline": pipeline(args.pipeline_facts, 256),
        "latency": latency(args.latency_facts, args.latency_interval),
        "throughput": throughput(args.throughput_facts),
    }
    report("anchor", result)


if __name__ == "__main__":
    main()
