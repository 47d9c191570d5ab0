"""The knowhub command line against a real node process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, SHARED
from tests.helpers import NodeProcess, free_port, knowhub


def test_add_and_query(node: NodeProcess) -> None:
    first = knowhub(
        "add",
        "Honey never spoils when sealed.",
        "--meta",
        "source=cli",
        "--meta-json",
        "year=2024",
        "--meta-json",
        'tags=["food"]',
        "--url",
        node.url,
    )
    assert first.returncode == 0, first.stderr
    cid, status = first.stdout.split()
    assert cid.startswith("bafyrei") and status == "created"
    again = knowhub(
        "add",
        "Honey never spoils when sealed.",
        "--meta",
        "source=cli",
        "--meta-json",
        "year=2024",
        "--meta-json",
        'tags=["food"]',
        "--url",
        node.url,
    )
    assert again.stdout.split() == [cid, "exists"]
    found = knowhub("query", "does honey go bad?", "-k", "3", "--mode", "dense", "--url", node.url)
    assert found.returncode == 0
    assert cid in found.stdout and "Honey never spoils" in found.stdout
    wide = knowhub(
        "query", "does honey go bad?", "--ef", "512", "--mode", "dense", "--url", node.url
    )
    assert wide.returncode == 0 and cid in wide.stdout
    narrow = knowhub("query", "honey", "--ef", "0", "--url", node.url)
    assert narrow.returncode == 1 and "400" in narrow.stderr and "ef" in narrow.stderr
    as_json = json.loads(
        knowhub("query", "honey", "--json", "--filter", '{"year": 2024}', "--url", node.url).stdout
    )
    assert [r["cid"] for r in as_json["results"]] == [cid]
    status = json.loads(knowhub("status", "--url", node.url).stdout)
    assert status["facts"] >= 1


def test_add_reports_node_errors(node: NodeProcess) -> None:
    bad = knowhub("add", "   ", "--url", node.url)
    assert bad.returncode == 1
    assert "400 invalid_fact" in bad.stderr
    unreachable = knowhub("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1
    assert "cannot reach node" in unreachable.stderr
    assert "knowhub node" in unreachable.stderr and "--url" in unreachable.stderr


def test_import_is_resumable(node: NodeProcess, tmp_path: Path) -> None:
    path = tmp_path / "facts.jsonl"
    lines = [
        json.dumps({"text": f"Imported fact number {i} about rivers.", "metadata": {"i": i}})
        for i in range(30)
    ]
    lines.insert(7, "this line is not json")
    path.write_text("\n".join(lines) + "\n")
    first = knowhub("import", str(path), "--batch-size", "8", "--url", node.url)
    assert first.returncode == 1  # one bad line is reported, the rest are stored
    assert "line 8: not JSON" in first.stderr
    assert "created 30, already stored 0, failed 1" in first.stdout
    assert "fact/s" in first.stderr or "%" in first.stderr  # the progress bar
    resumed = knowhub("import", str(path), "--url", node.url)
    assert resumed.returncode == 0
    assert "created 0, already stored 0, failed 0 (resumed after line 31)" in resumed.stdout
    restarted = knowhub("import", str(path), "--restart", "--url", node.url)
    assert "created 0, already stored 30, failed 1" in restarted.stdout


def test_import_beir_corpus(node: NodeProcess, tmp_path: Path) -> None:
    source = SHARED / "datasets" / "scifact" / "corpus.jsonl"
    path = tmp_path / "scifact-head.jsonl"
    head = source.read_text().splitlines()[:12]
    path.write_text("\n".join(head) + "\n")
    result = knowhub("import", str(path), "--beir", "--no-progress", "--url", node.url)
    assert result.returncode == 0, result.stderr
    assert "created 12" in result.stdout
    doc = json.loads(head[3])
    found = json.loads(
        knowhub(
            "query",
            doc["title"],
            "--json",
            "-k",
            "1",
            "--filter",
            json.dumps({"doc_id": doc["_id"]}),
            "--url",
            node.url,
        ).stdout
    )
    assert found["results"][0]["text"] == f"{doc['title']} {doc['text']}"


def test_node_reads_its_settings_from_the_environment(tmp_path: Path) -> None:
    port = free_port()
    node = NodeProcess(tmp_path / "env-data", port=port)
    env = {
        "KNOWHUB_DATA_DIR": str(tmp_path / "from-env"),
        "KNOWHUB_PORT": str(port),
        "KNOWHUB_URL": "http://ignored-by-the-node",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "node"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(f"{node.url}/v1/status", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert status is not None, "node did not start from environment settings"
        assert "data_dir" not in status  # the node's filesystem layout is nobody's business
        assert (tmp_path / "from-env" / "catalog.sqlite3").exists()
        assert (tmp_path / "from-env" / "node.lock").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_node_refuses_bad_settings(tmp_path: Path) -> None:
    env = {**os.environ, "KNOWHUB_PORT": "not-a-port", "KNOWHUB_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "node"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "invalid setting KNOWHUB_PORT" in result.stderr


def test_node_takes_its_port_before_building_the_node(tmp_path: Path) -> None:
    """A port in use fails at once, before the model loads or a chain starts; and the embedded
    chain can no longer be handed the node's own port (a CI run saw exactly that race)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "KNOWHUB_DATA_DIR": str(tmp_path), "KNOWHUB_PORT": str(port)}
        result = subprocess.run(
            [sys.executable, "-m", "api.cli", "node"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1  # "any error", as the README says (uvicorn's own was 3)
    assert f"cannot listen on 127.0.0.1:{port}: [Errno 98] Address already in use" in result.stderr
    assert "embedding model" not in result.stderr
    assert not (tmp_path / "chain").exists()
    assert not (tmp_path / "catalog.sqlite3").exists()
