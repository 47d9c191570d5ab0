"""Every endpoint and every bad-input case against a real node process over HTTP."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from multiformats import CID

from index.embedder import bundled_model_path
from index.model_files import describe_bundled_model
from node.model_identity import model_cid
from tests.helpers import NodeProcess

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def http(node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=60) as client:
        yield client


def test_health_status_and_docs(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    status = http.get("/v1/status").json()
    precision = "int8" if os.environ.get("KNOWHUB_EMBEDDER", "onnx-int8") == "onnx-int8" else "fp32"
    assert status["model"] == {
        "name": "sentence-transformers/all-MiniLM-L6-v2",
        "dimension": 384,
        "cid": model_cid(describe_bundled_model(bundled_model_path(), precision)),
        "precision": precision,
    }
    assert status["index"]["kind"] == "flat"
    assert status["version"] == "0.1.0"
    assert "data_dir" not in status  # an anonymous caller learns no local path
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/facts", "/v1/facts/batch", "/v1/facts/{cid}", "/v1/query", "/v1/status"} <= set(
        paths
    )


def test_contribute_get_and_idempotency(http: httpx.Client) -> None:
    body = {"text": "The Eiffel Tower is in Paris.", "metadata": {"lang": "en", "year": 1889}}
    first = http.post("/v1/facts", json=body)
    assert first.status_code == 201, first.text
    cid = first.json()["cid"]
    assert first.json() == {"cid": cid, "status": "created"}
    assert cid.startswith("bafyrei")
    again = http.post(
        "/v1/facts", json={"metadata": {"year": 1889, "lang": "en"}, "text": body["text"]}
    )
    assert again.status_code == 200
    assert again.json() == {"cid": cid, "status": "exists"}
    got = http.get(f"/v1/facts/{cid}").json()
    assert got["cid"] == cid
    assert got["status"] == "stored"
    assert got["record"] == {
        "v": 1,
        "text": body["text"],
        "metadata": body["metadata"],
        "contributor": http.get("/v1/status").json()["operator"],
    }
    assert got["signature"].startswith("0x") and len(got["signature"]) == 132
    # the same CID in another multibase names the same fact
    b58 = str(CID.decode(cid).set(base="base58btc"))
    assert http.get(f"/v1/facts/{b58}").json()["cid"] == cid


def test_concurrent_identical_posts_store_once(http: httpx.Client) -> None:
    body = {"text": "Concurrent submissions of one fact are stored once."}
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: http.post("/v1/facts", json=body), range(16)))
    assert sorted(r.status_code for r in responses) == [200] * 15 + [201]
    assert len({r.json()["cid"] for r in responses}) == 1


def test_batch_results_are_per_item_and_in_order(http: httpx.Client) -> None:
    facts: list[Any] = [
        {"text": "Batch fact one about glaciers."},
        {"text": ""},
        {"text": "Batch fact two about volcanoes.", "metadata": {"tags": ["geo"]}},
        "not an object",
        {"text": "x", "metadata": {"bad": 1.5}},
        {"text": "Batch fact one about glaciers."},
        {"text": "y", "unknown": 1},
    ]
    response = http.post("/v1/facts/batch", json={"facts": facts})
    assert response.status_code == 200, response.text
    out = response.json()
    assert [r["index"] for r in out["results"]] == list(range(7))
    assert [r["status"] for r in out["results"]] == [
        "created",
        "error",
        "created",
        "error",
        "error",
        "exists",
        "error",
    ]
    assert out["results"][1]["error"]["field"] == "text"
    assert out["results"][4]["error"]["field"] == "metadata.bad"
    assert out["results"][0]["cid"] == out["results"][5]["cid"]
    assert (out["created"], out["existing"], out["failed"]) == (2, 1, 4)
    for item in out["results"]:
        if item["cid"]:
            assert http.get(f"/v1/facts/{item['cid']}").status_code == 200


def test_query_modes_filters_context_and_timing(http: httpx.Client) -> None:
    facts = [
        {
            "text": "Penguins live in Antarctica and eat krill.",
            "metadata": {"topic": "animals", "tags": ["bird", "cold"]},
        },
        {
            "text": "Camels store fat in their humps to survive the desert.",
            "metadata": {"topic": "animals", "tags": ["mammal", "hot"]},
        },
        {
            "text": "The Sahara is the largest hot desert on Earth.",
            "metadata": {"topic": "places", "tags": ["hot"]},
        },
        {
            "text": "Mount Everest is the highest mountain above sea level.",
            "metadata": {"topic": "places", "tags": ["cold"]},
        },
    ]
    cids = [r["cid"] for r in http.post("/v1/facts/batch", json={"facts": facts}).json()["results"]]
    for mode in ("dense", "keyword", "hybrid"):
        r = http.post(
            "/v1/query",
            json={"query": "Which birds eat krill in Antarctica?", "mode": mode, "k": 3},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["results"][0]["cid"] == cids[0], mode
        assert set(body["results"][0]) == {
            "cid",
            "text",
            "score",
            "relevance",
            "metadata",
            "contributor",
            "provenance",
            "curation",
        }
        # the operator key signed it, and the operator key is the node's trust root
        assert body["results"][0]["curation"]["reputation"] == 1.0
        assert body["results"][0]["relevance"] >= body["min_relevance"]
        assert f"[1] {facts[0]['text']} (cid: {cids[0]})" in body["context"]
        timing = r.headers["server-timing"]
        assert "search;dur=" in timing
        # every mode embeds the query: keyword mode too, for the hits' relevance
        assert "embed;dur=" in timing and "embed;dur=0.000" not in timing
    default = http.post("/v1/query", json={"query": "desert"}).json()
    assert 1 <= len(default["results"]) <= 5
    hot_places = http.post(
        "/v1/query",
        json={
            "query": "animals of the desert",
            "filter": {"topic": "places", "tags": {"$in": ["hot"]}},
            "k": 10,
        },
    ).json()
    assert [h["cid"] for h in hot_places["results"]] == [cids[2]]
    nothing = http.post("/v1/query", json={"query": "desert", "filter": {"topic": "none"}}).json()
    assert nothing["results"] == []
    assert "No facts" in nothing["context"]
    strict = http.post(
        "/v1/query",
        json={
            "query": "Penguins live in Antarctica and eat krill.",
            "mode": "dense",
            "min_score": 0.99,
            "k": 10,
        },
    ).json()
    assert [h["cid"] for h in strict["results"]] == [cids[0]]


BIG_TEXT = "x" * (16 * 1024 + 1)

BAD_REQUESTS: list[tuple[str, str, str, dict[str, str], bytes | None, int, str]] = [
    # (id, method, path, headers, body, status, error code)
    ("malformed-json", "POST", "/v1/facts", JSON, b'{"text": ', 400, "malformed_json"),
    ("json-array", "POST", "/v1/facts", JSON, b"[1, 2]", 400, "invalid_request"),
    ("empty-body", "POST", "/v1/facts", JSON, b"", 400, "missing_body"),
    ("no-content-type", "POST", "/v1/facts", {}, b'{"text": "x"}', 415, "unsupported_media_type"),
    (
        "text-plain",
        "POST",
        "/v1/facts",
        {"content-type": "text/plain"},
        b"x",
        415,
        "unsupported_media_type",
    ),
    (
        "form",
        "POST",
        "/v1/query",
        {"content-type": "application/x-www-form-urlencoded"},
        b"query=x",
        415,
        "unsupported_media_type",
    ),
    ("empty-text", "POST", "/v1/facts", JSON, b'{"text": ""}', 400, "invalid_fact"),
    ("blank-text", "POST", "/v1/facts", JSON, b'{"text": " \\n\\t "}', 400, "invalid_fact"),
    ("missing-text", "POST", "/v1/facts", JSON, b'{"metadata": {}}', 400, "invalid_request"),
    ("number-text", "POST", "/v1/facts", JSON, b'{"text": 5}', 400, "invalid_request"),
    ("null-text", "POST", "/v1/facts", JSON, b'{"text": null}', 400, "invalid_request"),
    (
        "text-too-long",
        "POST",
        "/v1/facts",
        JSON,
        json.dumps({"text": BIG_TEXT}).encode(),
        400,
        "invalid_fact",
    ),
    ("lone-surrogate", "POST", "/v1/facts", JSON, b'{"text": "a \\ud800 b"}', 400, "invalid_fact"),
    (
        "metadata-list",
        "POST",
        "/v1/facts",
        JSON,
        b'{"text": "x", "metadata": [1]}',
        400,
        "invalid_request",
    ),
    (
        "metadata-float",
        "POST",
        "/v1/facts",
        JSON,
        b'{"text": "x", "metadata": {"a": 1.5}}',
        400,
        "invalid_fact",
    ),
    (
        "metadata-null",
        "POST",
        "/v1/facts",
        JSON,
        b'{"text": "x", "metadata": {"a": null}}',
        400,
        "invalid_fact",
    ),
    (
        "metadata-nested",
        "POST",
        "/v1/facts",
        JSON,
        b'{"text": "x", "metadata": {"a": {"b": 1}}}',
        400,
        "invalid_fact",
    ),
    (
        "metadata-mixed-list",
        "POST",
        "/v1/facts",
        JSON,
        b'{"text": "x", "metadata": {"a": ["b", 2]}}',
        400,
        "invalid_fact",
    ),
    (
        "metadata-too-big",
        "POST",
        "/v1/facts",
        JSON,
        json.dumps({"text": "x", "metadata": {"k": "v" * 5000}}).encode(),
        400,
        "invalid_fact",
    ),
    (
        "metadata-huge-int",
        "POST",
        "/v1/facts",
        JSON,
        b'{"text": "x", "metadata": {"n": 123456789012345678901234567890}}',
        400,
        "invalid_fact",
    ),
    (
        "unknown-field",
        "POST",
        "/v1/facts",
        JSON,
        b'{"text": "x", "cid": "bafy"}',
        400,
        "invalid_request",
    ),
    (
        "batch-not-list",
        "POST",
        "/v1/facts/batch",
        JSON,
        b'{"facts": {"text": "x"}}',
        400,
        "invalid_request",
    ),
    (
        "batch-too-many",
        "POST",
        "/v1/facts/batch",
        JSON,
        json.dumps({"facts": [{"text": f"f{i}"} for i in range(1001)]}).encode(),
        400,
        "invalid_request",
    ),
    ("query-empty", "POST", "/v1/query", JSON, b'{"query": "  "}', 400, "invalid_query"),
    ("query-missing", "POST", "/v1/query", JSON, b'{"k": 3}', 400, "invalid_request"),
    ("k-zero", "POST", "/v1/query", JSON, b'{"query": "x", "k": 0}', 400, "invalid_request"),
    ("k-101", "POST", "/v1/query", JSON, b'{"query": "x", "k": 101}', 400, "invalid_request"),
    ("k-string", "POST", "/v1/query", JSON, b'{"query": "x", "k": "many"}', 400, "invalid_request"),
    (
        "proofs-string",
        "POST",
        "/v1/query",
        JSON,
        b'{"query": "x", "proofs": "yes"}',
        400,
        "invalid_request",
    ),
    (
        "proofs-int",
        "POST",
        "/v1/query",
        JSON,
        b'{"query": "x", "proofs": 1}',
        400,
        "invalid_request",
    ),
    (
        "proofs-nested",
        "POST",
        "/v1/query",
        JSON,
        b'{"query": "x", "proofs": [[[true]]]}',
        400,
        "invalid_request",
    ),
    (
        "bad-mode",
        "POST",
        "/v1/query",
        JSON,
        b'{"query": "x", "mode": "fuzzy"}',
        400,
        "invalid_request",
    ),
    (
        "bad-filter-op",
        "POST",
        "/v1/query",
        JSON,
        b'{"query": "x", "filter": {"a": {"$gt": 1}}}',
        400,
        "invalid_filter",
    ),
    (
        "bad-filter-value",
        "POST",
        "/v1/query",
        JSON,
        b'{"query": "x", "filter": {"a": 1.5}}',
        400,
        "invalid_filter",
    ),
    (
        "query-too-long",
        "POST",
        "/v1/query",
        JSON,
        json.dumps({"query": BIG_TEXT}).encode(),
        400,
        "invalid_query",
    ),
    ("not-a-cid", "GET", "/v1/facts/not-a-cid", {}, None, 400, "invalid_cid"),
    ("cid-garbage", "GET", "/v1/facts/bafy!!!", {}, None, 400, "invalid_cid"),
    (
        "unknown-cid",
        "GET",
        "/v1/facts/bafyreidbp4w4f3gt66earpbqagk2hadh4476uqatydbavat6lbshyaaaaa",
        {},
        None,
        404,
        "not_found",
    ),
    (
        "raw-cid",
        "GET",
        "/v1/facts/bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        {},
        None,
        404,
        "not_found",
    ),
    ("no-route", "GET", "/v1/nothing", {}, None, 404, "not_found"),
    ("wrong-method", "DELETE", "/v1/status", {}, None, 405, "method_not_allowed"),
    (
        "body-too-large",
        "POST",
        "/v1/facts/batch",
        JSON,
        b'{"facts": ["' + b"a" * (2 << 20) + b'"]}',
        413,
        "body_too_large",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_input_gets_a_clear_4xx(
    http: httpx.Client,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    status: int,
    code: str,
) -> None:
    before = http.get("/v1/status").json()["facts"]
    response = http.request(method, path, headers=headers, content=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert http.get("/v1/status").json()["facts"] == before  # nothing stored by a bad request


def test_unknown_cid_that_is_invalid_multibase(http: httpx.Client) -> None:
    response = http.get("/v1/facts/" + "z" * 300)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cid"


def test_chunked_body_over_the_limit_is_cut_off(node: NodeProcess) -> None:
    def chunks() -> Any:
        yield b'{"text": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}'

    response = httpx.post(f"{node.url}/v1/facts", content=chunks(), headers=JSON, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_a_stalled_body_times_out_instead_of_hanging(node: NodeProcess) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", node.port), timeout=20) as sock:
        sock.sendall(
            b"POST /v1/facts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"text": '
        )
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 408"), data
    assert b"body_timeout" in data
    assert time.monotonic() - started < 15
    # and the node still serves
    assert httpx.get(f"{node.url}/healthz").status_code == 200
