"""Helpers for tests that run networks of real node processes (tests/integration/test_p2p*.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import NodeProcess

NO_CHAIN = {"KNOWHUB_LOCAL_CHAIN": "false", "KNOWHUB_SYNC_INTERVAL": "5"}


def wait_until(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> float:
    """Poll ``check`` until true; the seconds it took (fails after ``timeout``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def p2p(node: NodeProcess) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{node.url}/v1/status", timeout=30).json()["p2p"]
    return result


def address(node: NodeProcess) -> str:
    return str(p2p(node)["listen_addresses"][0])


def has(node: NodeProcess, cid: str) -> bool:
    return httpx.get(f"{node.url}/v1/facts/{cid}", timeout=30).status_code == 200


def add(node: NodeProcess, text: str) -> str:
    response = httpx.post(f"{node.url}/v1/facts", json={"text": text}, timeout=60)
    assert response.status_code == 201, response.text
    return str(response.json()["cid"])


def start(
    path: Path, bootstrap: NodeProcess | None = None, extra: dict[str, str] | None = None
) -> NodeProcess:
    env = {**NO_CHAIN, **(extra or {})}
    if bootstrap is not None:
        env["KNOWHUB_BOOTSTRAP"] = address(bootstrap)
    return NodeProcess(path, env=env).start()


def running_line(base: Path, extra: dict[str, str] | None = None) -> Iterator[list[NodeProcess]]:
    """Three node processes in a line (n1 - n2 - n3), stopped afterwards (a fixture body);
    ``extra`` environment for all three."""
    n1 = start(base / "n1", extra=extra)
    n2 = start(base / "n2", bootstrap=n1, extra=extra)
    n3 = start(base / "n3", bootstrap=n2, extra=extra)
    nodes = [n1, n2, n3]
    wait_until(lambda: p2p(n2)["connected_peers"] == 2, what="the line to form")
    yield nodes
    for node in nodes:
        if node.proc is not None and node.proc.poll() is None:
            node.stop()
