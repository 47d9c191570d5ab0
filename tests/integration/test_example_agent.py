"""scripts/example_agent.py runs its whole loop against a real node (no LLM: extractive)."""

from __future__ import annotations

import subprocess
import sys
import time

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
