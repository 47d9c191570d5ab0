"""Schemathesis (pinned) against a real node process: the OpenAPI document says what the API
really accepts and answers.

Every operation is generated from the node's own ``/openapi.json`` (positive and negative
data, the examples, coverage, fuzzing and stateful phases), with every check on: no server
error, no undocumented status code, content type or header, every response body valid
against its schema, no schema-invalid request accepted. The two exceptions (rules JSON Schema
cannot say) are listed with their reasons in ``tests/schemathesis/schemathesis.toml``.
Generation is deterministic, so a failure reproduces.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.helpers import NodeProcess

CONFIG = ROOT / "tests" / "schemathesis" / "schemathesis.toml"


@pytest.fixture(scope="module")
def fuzzed_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    # the whole node: embedded chain, networking, MCP and the web page, as operators run it
    proc = NodeProcess(tmp_path_factory.mktemp("schemathesis") / "data").start()
    yield proc
    proc.stop()


def run_schemathesis(url: str, report: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(CONFIG),
            "run",
            f"{url}/openapi.json",
            "--workers",
            "1",
            "--request-timeout",
            "120",
            "--suppress-health-check",
            "all",
            "--no-color",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
        ],
        cwd=report.parent,  # its crash cache (.schemathesis/) stays out of the checkout
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.schemathesis.hooks",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        },
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_the_api_matches_its_openapi_document(fuzzed_node: NodeProcess, tmp_path: Path) -> None:
    result = run_schemathesis(fuzzed_node.url, tmp_path / "junit.xml")
    output = result.stdout + result.stderr
    summary = re.search(r"(\d+) generated, (\d+) passed", output)
    assert result.returncode == 0 and summary is not None, output[-20000:]
    generated, passed = int(summary.group(1)), int(summary.group(2))
    assert generated == passed and generated >= 300, output[-5000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected is not None and tested is not None, output[-5000:]
    assert selected.group(1) == selected.group(2) == tested.group(1), output[-5000:]
    # the node is still up and well after all of it
    assert httpx.get(f"{fuzzed_node.url}/healthz", timeout=30).status_code == 200
    assert "Traceback" not in fuzzed_node.log(), fuzzed_node.log()[-5000:]
