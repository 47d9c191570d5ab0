"""Chaos: SIGKILL a real node at random moments during batch ingest, N times, and check after
every restart that no acknowledged fact was lost or duplicated.

    .venv/bin/python scripts/chaos.py --kills 200            # the RELIABILITY.md run
    .venv/bin/python scripts/chaos.py --kills 3 --json out   # the short run in the tests

Each round: start ``knowhub node`` (real model, SQLite, FAISS; flat index; an index save
every 0.5 s so kills also land inside saves), run two writers posting batches of new facts,
SIGKILL the node after a random 0.2-3 s, restart it, and check:

- every CID the node ever acknowledged (201/200 "created"/"exists" in a batch answer) is
  served by ``GET /v1/facts/{cid}`` (the ones acknowledged in the last round every time; all
  of them every 10 rounds and at the end);
- the vector index holds exactly the catalog's searchable facts (``/v1/status``: index size ==
  facts - index.duplicates, the near-duplicates kept out of search): no
  duplicate and no missing vector;
- the node restarted healthy.

The local chain and networking are off (``KNOWHUB_LOCAL_CHAIN=false``,
``KNOWHUB_P2P_LISTEN=off``): this run is about the catalog, the index and the queues; kills
between anchoring steps are covered by tests/integration/test_provenance.py. Exit status 0
only when nothing was lost, duplicated or failed to restart.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _bench import free_port

ROOT = Path(__file__).resolve().parent.parent


class Node:
    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> bool:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "KNOWHUB_LOCAL_CHAIN": "false",
            "KNOWHUB_P2P_LISTEN": "off",
            "KNOWHUB_INDEX_FLUSH_INTERVAL": "0.5",
            "KNOWHUB_LOG_FORMAT": "text",
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "node", "--data-dir", str(self.data_dir),
                 "--port", str(self.port), "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=60)


class Writers:
    """Threads posting batches of new facts until stopped; they keep every acknowledged CID."""

    def __init__(self, url: str, counter: list[int], batch: int) -> None:
        self.url = url
        self.counter = counter
        self.batch = batch
        self.acked: dict[str, str] = {}
        self.stop = threading.Event()
        self.requests = 0
        self.in_flight = 0
        self.lock = threading.Lock()

    def run(self, threads: int) -> list[threading.Thread]:
        workers = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]
        for w in workers:
            w.start()
        return workers

    def _loop(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                with self.lock:
                    start = self.counter[0]
                    self.counter[0] += self.batch
                texts = [
                    f"Chaos fact {i}: measurement {i * 7919 % 104729} was recorded at site "
                    f"{i % 97} under condition {i % 13}."
                    for i in range(start, start + self.batch)
                ]
                with self.lock:
                    self.in_flight += 1
                try:
                    reply = client.post(
                        f"{self.url}/v1/facts/batch",
                        json={"facts": [{"text": t} for t in texts]},
                    )
                except httpx.HTTPError:
                    return  # the node was killed mid-request: nothing acknowledged
                finally:
                    with self.lock:
                        self.in_flight -= 1
                self.requests += 1
                if reply.status_code != 200:
                    continue
                for item in reply.json()["results"]:
                    if item["status"] in {"created", "exists"}:
                        with self.lock:
                            self.acked[item["cid"]] = texts[item["index"]]


def check(url: str, cids: list[str]) -> list[str]:
    missing = []
    with httpx.Client(timeout=60) as client:
        for cid in cids:
            if client.get(f"{url}/v1/facts/{cid}").status_code != 200:
                missing.append(cid)
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=16, help="facts per batch request")
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the summary here too")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = args.data_dir or Path(tempfile.mkdtemp(prefix="knowhub-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    node = Node(work / "data", work / "node.log")
    acked: dict[str, str] = {}
    counter = [0]
    summary: dict[str, Any] = {
        "kills": 0, "failed_restarts": 0, "lost": [], "index_mismatches": 0,
        "acknowledged": 0, "killed_mid_request": 0, "started": time.time(),
    }  # fmt: skip
    if not node.start(args.start_timeout):
        sys.stderr.write(f"node did not start; log: {node.log}\n")
        return 2
    for round_no in range(1, args.kills + 1):
        writers = Writers(node.url, counter, args.batch)
        threads = writers.run(args.writers)
        time.sleep(rng.uniform(0.2, 3.0))
        mid_request = writers.in_flight > 0
        node.kill()
        writers.stop.set()
        for t in threads:
            t.join(timeout=120)
        summary["kills"] += 1
        summary["killed_mid_request"] += int(mid_request)
        new = dict(writers.acked)
        acked.update(new)
        if not node.start(args.start_timeout):
            summary["failed_restarts"] += 1
            sys.stderr.write(f"round {round_no}: restart failed; log: {node.log}\n")
            break
        to_check = list(new) if round_no % 10 and round_no != args.kills else list(acked)
        lost = check(node.url, to_check)
        summary["lost"] += [c for c in lost if c not in summary["lost"]]
        status = httpx.get(f"{node.url}/v1/status", timeout=30).json()
        searchable = status["facts"] - status["index"]["duplicates"]
        if status["index"]["size"] != searchable or status["facts"] < len(acked):
            summary["index_mismatches"] += 1
        sys.stderr.write(
            f"round {round_no}/{args.kills}: +{len(new)} acknowledged (total {len(acked)}), "
            f"catalog {status['facts']}, index {status['index']['size']}, lost {len(lost)}\n"
        )
    node.kill()
    summary["acknowledged"] = len(acked)
    summary["seconds"] = round(time.time() - summary.pop("started"), 1)
    summary["lost_count"] = len(summary["lost"])
    ok = (
        not summary["lost"]
        and not summary["failed_restarts"]
        and not summary["index_mismatches"]
        and summary["kills"] == args.kills
    )
    summary["ok"] = ok
    text = json.dumps(summary, indent=2)
    sys.stdout.write(text + "\n")
    if args.json is not None:
        args.json.write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
