"""Reliability on real node processes: one node per data dir, lost data detected and
recovered after a damaged WAL, readiness, and a short chaos run of SIGKILLs during ingest."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.helpers import NodeProcess

pytestmark = pytest.mark.integration

QUICK = {"KNOWHUB_LOCAL_CHAIN": "false", "KNOWHUB_P2P_LISTEN": "off"}


def wait_for(predicate: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_second_node_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = NodeProcess(tmp_path / "data", env=QUICK).start()
    try:
        assert first.proc is not None
        holder = first.proc.pid
        second = NodeProcess(tmp_path / "data", env=QUICK)
        with pytest.raises(RuntimeError, match=rf"in use by another knowhub node \(pid {holder}\)"):
            second.start(timeout=180)
        # the first node is untouched and still takes writes
        reply = httpx.post(f"{first.url}/v1/facts", json={"text": "still mine"}, timeout=60)
        assert reply.status_code == 201
        assert httpx.get(f"{first.url}/readyz", timeout=30).json() == {
            "status": "ready",
            "reasons": [],
        }
    finally:
        first.stop()


def test_facts_lost_with_a_damaged_wal_are_detected_and_recovered(tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = NodeProcess(data, env={**QUICK, "KNOWHUB_INDEX_FLUSH_INTERVAL": "0.5"}).start()
    texts = [f"Acknowledged fact number {i} about a damaged write-ahead log." for i in range(20)]
    reply = httpx.post(
        f"{node.url}/v1/facts/batch", json={"facts": [{"text": t} for t in texts]}, timeout=120
    )
    assert reply.status_code == 200 and reply.json()["created"] == 20
    cids = [r["cid"] for r in reply.json()["results"]]

    def settled() -> bool:
        status = httpx.get(f"{node.url}/v1/status", timeout=30).json()
        return bool(status["ipfs"]["publication_backlog"] == 0)

    wait_for(settled)
    time.sleep(1.5)  # an index save (every 0.5 s) with the 20 ids
    node.kill()
    wal = data / "catalog.sqlite3-wal"
    assert wal.exists() and wal.stat().st_size > 32, "the facts should still be in the WAL"
    with wal.open("r+b") as fh:  # damage every frame: SQLite ignores the log from there on
        fh.seek(32)
        fh.write(b"\xff" * 64)
    node = NodeProcess(data, env=QUICK).start()
    try:
        status = httpx.get(f"{node.url}/v1/status", timeout=30).json()
        integrity = status["integrity"]
        assert integrity["scanned"] is True
        assert integrity["lost_from_catalog"] == 20
        assert integrity["recovered"] == 20 and integrity["unrecoverable_count"] == 0
        assert status["facts"] == 20 and status["index"]["size"] == 20
        for cid in cids:
            assert httpx.get(f"{node.url}/v1/facts/{cid}", timeout=30).status_code == 200
        assert "catalog lost 20 acknowledged facts" in node.log_path.read_text(errors="replace")
    finally:
        node.stop()


def test_chaos_short_run(tmp_path: Path) -> None:
    """scripts/chaos.py with 3 kills (RELIABILITY.md has the 200-kill run)."""
    out = tmp_path / "chaos.json"
    result = subprocess.run(
        [sys.executable, "scripts/chaos.py", "--kills", "3", "--data-dir", str(tmp_path / "w"),
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["kills"] == 3 and summary["lost_count"] == 0
    assert summary["failed_restarts"] == 0 and summary["index_mismatches"] == 0
    assert summary["acknowledged"] > 0


def test_writes_beyond_the_ingest_bound_get_503_with_retry_after(tmp_path: Path) -> None:
    """Batch writers flood a node whose ingest bound is small: some writes get 503 with
    Retry-After (never a timeout), every acknowledged fact is stored, and queries are answered
    all along."""
    env = {**QUICK, "KNOWHUB_INGEST_QUEUE": "64", "KNOWHUB_INGEST_MAX_WAIT": "2"}
    node = NodeProcess(tmp_path / "data", env=env).start()
    acknowledged: list[str] = []
    refusals: list[httpx.Response] = []
    other: list[str] = []
    stop = threading.Event()

    def writer(worker: int) -> None:
        with httpx.Client(base_url=node.url, timeout=300) as client:
            for round_no in range(10_000):
                if stop.is_set():
                    return
                facts = [{"text": f"flood {worker}-{round_no}-{i}"} for i in range(64)]
                try:
                    reply = client.post("/v1/facts/batch", json={"facts": facts})
                except httpx.HTTPError as exc:  # a timeout is exactly what must not happen
                    other.append(repr(exc))
                    return
                if reply.status_code == 200:
                    acknowledged.extend(r["cid"] for r in reply.json()["results"] if r["cid"])
                elif reply.status_code == 503:
                    refusals.append(reply)
                else:
                    other.append(f"{reply.status_code} {reply.text[:200]}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 600
        answered = 0
        with httpx.Client(base_url=node.url, timeout=300) as client:
            while not refusals or answered < 3:
                assert time.monotonic() < deadline, "no 503 within the deadline"
                reply = client.post("/v1/query", json={"query": "flood", "mode": "hybrid"})
                assert reply.status_code == 200, reply.text
                answered += 1
        stop.set()
        for thread in threads:
            thread.join(timeout=600)
        assert not other, other[:5]
        for reply in refusals:
            assert reply.json()["error"]["code"] == "overloaded"
            assert int(reply.headers["retry-after"]) >= 1
        with httpx.Client(base_url=node.url, timeout=120) as client:
            for cid in acknowledged:
                assert client.get(f"/v1/facts/{cid}").status_code == 200, cid
            status = client.get("/v1/status").json()
        assert status["facts"] == len(set(acknowledged))
        assert status["ingest"]["bound"] == 64
    finally:
        stop.set()
        node.stop()
