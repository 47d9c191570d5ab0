"""``knowhub import`` against a node that is busy (429 / 503 with Retry-After) and one that
fails (503 without): in-process, the node answered by an httpx MockTransport."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

import api.cli
from api.cli import main
from api.client import NodeClient


def fake_node(monkeypatch: pytest.MonkeyPatch, answers: list[httpx.Response | None]) -> list[int]:
    """Answer batch posts with ``answers`` in turn (None, and after the last: stored); return
    the size of every batch posted."""
    sizes: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        facts = json.loads(request.content)["facts"]
        sizes.append(len(facts))
        answer = answers.pop(0) if answers else None
        if answer is not None:
            return answer
        results = [{"index": i, "cid": f"bafy{i}", "status": "created"} for i in range(len(facts))]
        return httpx.Response(
            200, json={"results": results, "created": len(facts), "existing": 0, "failed": 0}
        )

    monkeypatch.setattr(
        api.cli, "NodeClient", lambda url: NodeClient(url, transport=httpx.MockTransport(handle))
    )
    return sizes


def busy(status: int, retry_after: str | None) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    body = {"error": {"code": "busy", "message": "ingest queue full"}}
    return httpx.Response(status, json=body, headers=headers)


def lines(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "facts.jsonl"
    path.write_text("".join(json.dumps({"text": f"fact number {i}"}) + "\n" for i in range(n)))
    return path


def test_a_busy_node_is_waited_for_and_the_batch_sent_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sizes = fake_node(monkeypatch, [busy(503, "0"), busy(429, "0"), busy(503, "0")])
    path = lines(tmp_path, 5)
    assert main(["import", str(path), "--batch-size", "2", "--no-progress"]) == 0
    assert sizes == [2, 2, 2, 2, 2, 1]  # the first batch three more times, then the rest
    out = capsys.readouterr()
    assert "created 5, already stored 0, failed 0" in out.out
    assert out.err.count("node busy") == 3


def test_a_failing_node_ends_the_import_and_the_checkpoint_resumes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = lines(tmp_path, 5)
    # the second batch meets a 503 without Retry-After: the node is failing, not busy
    sizes = fake_node(monkeypatch, [None, busy(503, None)])
    assert main(["import", str(path), "--batch-size", "2", "--no-progress"]) == 1
    assert sizes == [2, 2]
    assert "503" in capsys.readouterr().err
    sizes = fake_node(monkeypatch, [])
    assert main(["import", str(path), "--batch-size", "2", "--no-progress"]) == 0
    assert sizes == [2, 1]  # resumed after the acknowledged first batch
    assert "resumed after line 2" in capsys.readouterr().out
