"""The federated query protocol's messages (p2p.query_wire) against docs/vectors/query.json,
and hostile requests and answers refused as malformed."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any, cast

import dag_cbor
import numpy as np
import pytest

from node.federation import check_remote_hit
from node.ports import RemoteHit
from p2p.query_wire import (
    MAX_REQUEST_BYTES,
    RemoteError,
    decode_answer,
    decode_request,
    encode_request,
)
from p2p.wire import InvalidEnvelope
from tests.conftest import ROOT

VECTORS = json.loads((ROOT / "docs" / "vectors" / "query.json").read_text())


def cbor(hexed: str) -> dict[str, Any]:
    return cast(dict[str, Any], dag_cbor.decode(bytes.fromhex(hexed)))


def test_committed_vectors_are_current() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/make_query_vectors.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("case", VECTORS["requests"], ids=lambda c: c["name"])
def test_requests_decode_to_their_fields_and_encode_back(case: dict[str, Any]) -> None:
    msg = cbor(case["message"])
    query = decode_request(msg)
    want = case["decoded"]
    assert query.text == want["text"] and query.model_cid == want["model"]
    assert np.allclose(query.vector, want["vector"], atol=1e-7)
    assert (query.k, query.mode.value, list(query.collections)) == (
        want["k"],
        want["mode"],
        want["collections"],
    )
    assert (None if query.filter is None else query.filter.to_json()) == want["filter"]
    assert query.include_superseded == want["superseded"]
    assert dag_cbor.encode(encode_request(query)).hex() == case["message"]
    framed = bytes.fromhex(case["framed"])
    assert framed.endswith(bytes.fromhex(case["message"])) and framed[0] == len(msg_bytes(case))


def msg_bytes(case: dict[str, Any]) -> bytes:
    return bytes.fromhex(case["message"])


@pytest.mark.parametrize("case", VECTORS["invalid_requests"], ids=lambda c: c["name"])
def test_invalid_requests_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        decode_request(cbor(case["message"]))
    assert case["reason"] in caught.value.message


HOSTILE_TEXTS: list[object] = [None, 7, b"bytes", "x" * (MAX_REQUEST_BYTES + 1), ["a"]]


@pytest.mark.parametrize("text", HOSTILE_TEXTS, ids=range(len(HOSTILE_TEXTS)))
def test_hostile_texts_are_refused(text: object) -> None:
    msg = cbor(VECTORS["requests"][0]["message"])
    with pytest.raises(InvalidEnvelope):
        decode_request({**msg, "text": text})


def test_hostile_vectors_and_models_are_refused() -> None:
    msg = cbor(VECTORS["requests"][0]["message"])
    inf = np.array([np.inf, 1.0], dtype="<f4").tobytes()
    for vector in (b"", inf, b"\x00" * (4 * 4097), [0.6, 0.8], "AAAA"):
        with pytest.raises(InvalidEnvelope):
            decode_request({**msg, "vector": vector})
    for model in ("", "b" * 129, 5, None):
        with pytest.raises(InvalidEnvelope):
            decode_request({**msg, "model": model})


@pytest.mark.parametrize("case", VECTORS["answers"], ids=lambda c: c["name"])
def test_answers_decode(case: dict[str, Any]) -> None:
    msg = cbor(case["message"])
    if "code" in case:
        with pytest.raises(RemoteError) as caught:
            decode_answer(msg, case["k"])
        assert caught.value.code == case["code"]
    else:
        answer = decode_answer(msg, case["k"])
        assert len(answer.hits) == len(msg["hits"])


@pytest.mark.parametrize("case", VECTORS["invalid_answers"], ids=lambda c: c["name"])
def test_invalid_answers_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        decode_answer(cbor(case["message"]), case["k"])
    assert case["reason"] in caught.value.message


def test_hostile_hits_are_refused() -> None:
    good = cbor(VECTORS["answers"][0]["message"])["hits"][0]
    for bad in (
        {**good, "score": float("nan")},
        {**good, "relevance": float("inf")},
        {**good, "score": "1"},
        {**good, "relevance": True},
        {**good, "cid": 5},
        {**good, "proof": []},
        {**good, "proof": {1: "x"}},
        "hit",
    ):
        with pytest.raises(InvalidEnvelope):
            decode_answer({"v": 1, "t": "hits", "hits": [bad]}, 5)


@pytest.mark.parametrize("case", VECTORS["hits"], ids=lambda c: c["name"])
def test_remote_hit_verdicts(case: dict[str, Any]) -> None:
    raw = case["hit"]
    hit = RemoteHit(raw["cid"], raw["score"], raw["relevance"], raw["proof"])
    got = check_remote_hit(hit, ("medicine",), None, None)
    if case["verdict"] == "dropped":
        assert got is None
    elif case["verdict"] == "failed":
        assert isinstance(got, str) and got == case["reason"]
    else:
        assert got is not None
        assert not isinstance(got, str) and got.check.verdict.value == case["verdict"]
        assert base64.b64decode(raw["proof"]["block"]) == got.fact.block
