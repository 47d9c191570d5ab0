"""scripts/example_agent.py runs its whole loop against a real node: extractively, and through an
OpenAI-compatible chat-completions endpoint (a small local one that records what it receives)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest

from tests.conftest import ROOT
from tests.helpers import NodeProcess

pytestmark = pytest.mark.integration


def test_agent_loop_builds_a_cited_prompt_and_checks_citations(node: NodeProcess) -> None:
    text = f"Example agent: sloths can hold their breath for forty minutes ({time.time():.0f})."
    cid = httpx.post(f"{node.url}/v1/facts", json={"text": text}).json()["cid"]
    result = subprocess.run(
        [sys.executable, "scripts/example_agent.py", "How long can sloths hold their breath?",
         "--url", node.url, "-k", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    prompt, answer = result.stdout.split("--- answer ---")
    assert f"[1] {text} (cid: {cid};" in prompt
    assert "Question: How long can sloths hold their breath?" in prompt
    assert answer.strip().splitlines()[0] == f"{text} [1]"
    citation = answer.split("--- citations ---")[1].strip()
    assert citation.startswith(f"[1] {cid} ")
    assert "verified on chain" in citation or "not verified: anchor" in citation


class _ChatCompletions(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible endpoint: records the request, answers citing [1] and [9]."""

    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.received.append({"path": self.path, "auth": self.headers.get("authorization"), **body})
        reply = json.dumps(
            {"choices": [{"message": {"role": "assistant", "content": "Forty minutes [1] [9]."}}]}
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def test_agent_sends_the_prompt_to_an_openai_compatible_endpoint(node: NodeProcess) -> None:
    text = f"Example agent: octopuses have three hearts ({time.time():.0f})."
    cid = httpx.post(f"{node.url}/v1/facts", json={"text": text}).json()["cid"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatCompletions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = subprocess.run(
            [sys.executable, "scripts/example_agent.py", "How many hearts does an octopus have?",
             "--url", node.url, "-k", "2", "--model", "tiny",
             "--llm-url", f"http://127.0.0.1:{server.server_port}/v1"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "LLM_API_KEY": "sk-test"},
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    (request,) = _ChatCompletions.received
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test"
    assert request["model"] == "tiny"
    assert f"[1] {text} (cid: {cid};" in request["messages"][0]["content"]
    answer = result.stdout.split("--- answer ---")[1]
    assert answer.strip().startswith("Forty minutes [1] [9].")
    citations = answer.split("--- citations ---")[1].strip().splitlines()
    assert citations[0].startswith(f"[1] {cid} ")
    assert citations[1] == "[9] cites no retrieved fact"
