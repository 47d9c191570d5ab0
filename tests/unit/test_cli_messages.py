"""What the CLI says when a user gets something wrong: one line that names the problem and the
way out (in-process, no node; the same commands against a real node are in
tests/integration/test_cli.py)."""

from __future__ import annotations

import argparse
import socket

import pytest

from api.cli import _filter_arg, main


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once the socket closes


def test_filter_takes_key_value_pairs_or_a_json_object() -> None:
    assert _filter_arg("lang=en") == {"lang": "en"}
    assert _filter_arg("note=a=b") == {"note": "a=b"}
    assert _filter_arg('{"year": {"$gte": 2020}}') == {"year": {"$gte": 2020}}
    for bad in ("lang", "=en", "{not json", "{}x", "[1]"):
        with pytest.raises(argparse.ArgumentTypeError):
            _filter_arg(bad)


def test_a_bad_filter_names_both_accepted_forms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["query", "honey", "--filter", "lang"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "KEY=VALUE" in err and "JSON object" in err and "invalid loads value" not in err


def test_an_unreachable_node_suggests_starting_one_or_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status", "--url", f"http://127.0.0.1:{closed_port()}"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach node" in err
    assert "knowhub node" in err and "--url" in err and "KNOWHUB_URL" in err
