"""`knowhub node` from a plain `pip install` (no npm tools): one line saying what is missing and
the ways out, exit status 1, nothing started (issue 16)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api import cli
from contracts import anvil
from node.datadir import DataDirLock


def test_a_missing_anvil_is_one_clear_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(anvil, "ANVIL_BIN", tmp_path / "no-anvil-here")
    monkeypatch.delenv("KNOWHUB_CHAIN_RPC", raising=False)
    monkeypatch.setenv("KNOWHUB_LOCAL_CHAIN", "true")
    code = cli.main(["node", "--data-dir", str(tmp_path / "data"), "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("knowhub: cannot start: the local chain needs anvil")
    for way_out in ("scripts/setup.sh", "KNOWHUB_CHAIN_RPC", "KNOWHUB_LOCAL_CHAIN=false"):
        assert way_out in lines[0]
    assert not (tmp_path / "data").exists()  # nothing was started or created


def test_a_chain_rpc_without_a_registry_is_refused_before_anything_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KNOWHUB_CHAIN_RPC", "http://127.0.0.1:9")
    monkeypatch.delenv("KNOWHUB_REGISTRY_ADDRESS", raising=False)
    code = cli.main(["node", "--data-dir", str(tmp_path / "data"), "--port", "0"])
    assert code == 1
    assert "KNOWHUB_REGISTRY_ADDRESS is not" in capsys.readouterr().err


def test_a_data_dir_in_use_is_one_clear_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held = DataDirLock(tmp_path / "data").acquire()  # another node runs there
    try:
        code = cli.main(["node", "--data-dir", str(tmp_path / "data"), "--port", "0"])
    finally:
        held.release()
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().startswith("knowhub: cannot start: data dir")
    assert f"in use by another knowhub node (pid {os.getpid()})" in err
