"""Hostile HTTP input against a real node process: every attack that once crashed the node,
answered 500 or was accepted when it should not be, kept as a test.

Each request must get a 4xx JSON error, store nothing, and leave the node up. The node of this
module runs with short body and header deadlines (2 s) so that slow clients are cut in time.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import NodeProcess

QUICK = {"KNOWHUB_LOCAL_CHAIN": "false", "KNOWHUB_P2P_LISTEN": "off"}
DEEP = b"[" * 80_000 + b"]" * 80_000  # segfaulted the process through py_ecc's recursion limit


@pytest.fixture(scope="module")
def hostile_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {**QUICK, "KNOWHUB_BODY_TIMEOUT": "2", "KNOWHUB_HEADER_TIMEOUT": "2"}
    proc = NodeProcess(tmp_path_factory.mktemp("hostile") / "data", env=env).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def http(hostile_node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile_node.url, timeout=120) as client:
        yield client


def facts_stored(http: httpx.Client) -> int:
    count: int = http.get("/v1/status").json()["facts"]
    return count


def post_raw(http: httpx.Client, path: str, body: str | bytes) -> httpx.Response:
    """POST a body as written: ``body`` may hold lone surrogates (as JSON ``\\u`` escapes)."""
    raw = body if isinstance(body, bytes) else body.encode("utf-8")
    return http.post(path, content=raw, headers={"content-type": "application/json"})


def assert_refused(reply: httpx.Response, status: int, code: str | None = None) -> None:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    if code is not None:
        assert error["code"] == code, error
    reply.content.decode("utf-8")  # the error itself is valid UTF-8


def test_deeply_nested_json_is_refused_on_every_json_route(
    http: httpx.Client, hostile_node: NodeProcess
) -> None:
    before = facts_stored(http)
    bodies = {
        "/v1/query": b'{"query":"x","filter":{"a":' + DEEP + b"}}",
        "/v1/facts": b'{"text":"x","metadata":{"a":' + DEEP + b"}}",
        "/v1/facts/batch": b'{"facts":' + DEEP + b"}",
        "/v1/peers": b'{"address":' + DEEP + b"}",
    }
    for path, body in bodies.items():
        assert_refused(post_raw(http, path, body), 400, "json_too_deep")
    mcp = http.post(
        "/mcp",
        content=b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":' + DEEP + b"}",
        headers={
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
        },
    )
    assert_refused(mcp, 400, "json_too_deep")
    # nesting inside strings is text, not depth
    text = "[" * 5000
    created = post_raw(http, "/v1/facts", json.dumps({"text": text}))
    assert created.status_code == 201, created.text
    assert facts_stored(http) == before + 1
    assert http.get("/healthz").status_code == 200
    assert hostile_node.proc is not None and hostile_node.proc.poll() is None


@pytest.mark.parametrize(
    "path",
    [
        "/v1/facts/0",
        "/v1/facts/0/provenance",
        "/ipfs/0?format=raw",
        "/v1/facts/f01",
        "/v1/facts/z",
        "/v1/facts/%F0%9F%98%80",
        "/v1/facts/b",
        "/v1/facts/k2jmtxw8rjh1z69c6not8q4ttgopd1yzz5y6tr6ybbqn0mhrd3wo6fixr",
        "/ipfs/bafkr4ihkr4ld3m4gqkjf4reryxsy2s5tkbxprqkow6fin2iiyvreuzzab4?format=raw",  # blake3
        "/ipfs/mAXCg5AIg?format=raw",
        "/ipfs/u%00?format=car",
    ],
)
def test_odd_multibases_and_broken_cids_are_400(http: httpx.Client, path: str) -> None:
    assert_refused(http.get(path), 400)


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/v1/facts", '{"text":"hello","metadata":{"\\udc80":"x"}}', "invalid_fact"),
        ("/v1/facts", '{"text":"hello","metadata":{"a":"\\ud800"}}', "invalid_fact"),
        ("/v1/facts", '{"text":"hello","metadata":{"a":["\\udfff"]}}', "invalid_fact"),
        ("/v1/facts", '{"text":"he\\udc80llo"}', "invalid_fact"),
        ("/v1/query", '{"query":"hello","filter":{"\\udc80":"x"}}', "invalid_filter"),
        ("/v1/query", '{"query":"hello","filter":{"a":"\\udc80"}}', "invalid_filter"),
        ("/v1/query", '{"query":"hello","filter":{"a":{"$in":["\\udc80"]}}}', "invalid_filter"),
        ("/v1/query", '{"query":"\\udc80"}', "invalid_query"),
    ],
)
def test_lone_surrogates_are_400_and_store_nothing(
    http: httpx.Client, path: str, body: str, code: str
) -> None:
    before = facts_stored(http)
    assert_refused(post_raw(http, path, body), 400, code)
    assert facts_stored(http) == before


@pytest.mark.parametrize(
    "text",
    ["\u0000", "\ufeff", "\u200b\u200c\u200d", " \t\n", "\u00a0\u2028\u3000", "\u0000\ufeff\u200b"],
)
def test_invisible_texts_are_not_facts(http: httpx.Client, text: str) -> None:
    before = facts_stored(http)
    assert_refused(post_raw(http, "/v1/facts", json.dumps({"text": text})), 400, "invalid_fact")
    batch = post_raw(http, "/v1/facts/batch", json.dumps({"facts": [{"text": text}]}))
    assert batch.status_code == 200 and batch.json()["failed"] == 1, batch.text
    assert_refused(post_raw(http, "/v1/query", json.dumps({"query": text})), 400, "invalid_query")
    assert facts_stored(http) == before


@pytest.mark.parametrize(
    "extra",
    [
        {"k": True},
        {"k": "5"},
        {"k": 5.0},
        {"min_score": True},
        {"min_score": "0.5"},
        {"vector": [True] * 384},
        {"vector": ["1"] * 384},
        {"mode": 1},
    ],
)
def test_query_fields_are_strictly_typed(http: httpx.Client, extra: dict[str, object]) -> None:
    assert_refused(post_raw(http, "/v1/query", json.dumps({"query": "x", **extra})), 400)


def test_huge_vector_components_rank_like_their_direction(http: httpx.Client) -> None:
    """384 x 3e38 once overflowed float32 to inf and scored every fact 0."""
    stored = post_raw(http, "/v1/facts", json.dumps({"text": "Vectors point somewhere."}))
    assert stored.status_code in (200, 201), stored.text
    huge = post_raw(
        http, "/v1/query", json.dumps({"query": "x", "vector": [3e38] * 384, "mode": "dense"})
    )
    unit = post_raw(
        http, "/v1/query", json.dumps({"query": "x", "vector": [1.0] * 384, "mode": "dense"})
    )
    assert huge.status_code == unit.status_code == 200, huge.text
    scores = [hit["score"] for hit in huge.json()["results"]]
    assert scores and any(score != 0 for score in scores)
    assert scores == pytest.approx([hit["score"] for hit in unit.json()["results"]], abs=1e-5)
    for vector in ([0.0] * 384, [1e-320] * 384, [1.0] * 383):
        assert_refused(
            post_raw(http, "/v1/query", json.dumps({"query": "x", "vector": vector})), 400
        )
    overflow = '{"query":"x","vector":[' + ",".join(["1e400"] * 384) + "]}"
    assert_refused(post_raw(http, "/v1/query", overflow), 400)


def test_status_does_not_tell_the_data_directory(http: httpx.Client) -> None:
    status = http.get("/v1/status")
    assert "data_dir" not in status.json()
    assert "/hostile" not in status.text


def test_openapi_documents_what_the_api_answers(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert "422" not in codes, (method, path)
            assert {"429", "503"} <= codes, (method, path)
            if method == "post":
                assert {"400", "408", "413", "415"} <= codes, (method, path)
    vector = doc["components"]["schemas"]["QueryIn"]["properties"]["vector"]["anyOf"][0]
    assert vector["minItems"] == vector["maxItems"] == 384


def _connect(node: NodeProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=120)
    sock.settimeout(120)
    return sock


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk


def test_a_body_sent_a_byte_at_a_time_is_cut_at_the_body_deadline(
    http: httpx.Client, hostile_node: NodeProcess
) -> None:
    before = facts_stored(http)
    body = json.dumps({"text": "slow " * 40}).encode()
    sock = _connect(hostile_node)
    sock.sendall(
        b"POST /v1/facts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    sock.setblocking(False)
    reply = b""
    sent = 0
    # one byte every 0.5 s: each chunk is well within the 2 s deadline, the whole body is not
    while sent < len(body) - 1:
        try:
            reply = sock.recv(65536)
        except BlockingIOError:
            reply = b""
        if reply:
            break
        try:
            sock.send(body[sent : sent + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += 1
        time.sleep(0.5)
    sock.setblocking(True)
    reply += _read_reply(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408"), (sent, reply[:300])
    assert sent < len(body) - 1
    assert facts_stored(http) == before


@pytest.mark.parametrize("partial", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"])
def test_a_client_that_never_finishes_its_headers_is_hung_up_on(
    hostile_node: NodeProcess, partial: bytes
) -> None:
    sock = _connect(hostile_node)
    sock.sendall(partial)
    # the node closes the connection (header deadline 2 s); the generous timeout only bounds a
    # failing test
    assert _read_reply(sock) == b""
    sock.close()


def test_connections_beyond_the_cap_get_503_with_retry_after(tmp_path: Path) -> None:
    env = {**QUICK, "KNOWHUB_MAX_CONNECTIONS": "3", "KNOWHUB_HEADER_TIMEOUT": "600"}
    node = NodeProcess(tmp_path / "data", env=env).start()
    held: list[socket.socket] = []
    try:
        # the start-up probe's connections close; wait until the node holds none of them
        deadline = time.monotonic() + 120
        while len(held) < 3:
            assert time.monotonic() < deadline, "could not open 3 connections"
            sock = _connect(node)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            sock.settimeout(1)
            try:
                if sock.recv(1):  # refused: an old connection was still counted
                    sock.close()
                    time.sleep(0.5)
                    continue
            except TimeoutError:
                pass
            sock.settimeout(120)
            held.append(sock)
        extra = _connect(node)
        reply = _read_reply(extra).decode()
        extra.close()
        assert reply.startswith("HTTP/1.1 503"), reply
        assert "retry-after: " in reply.lower()
        assert json.loads(reply.split("\r\n\r\n", 1)[1])["error"]["code"] == "too_many_connections"
    finally:
        for sock in held:
            sock.close()
    # the held ones gone, the node serves again
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{node.url}/healthz", timeout=30).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the node did not serve again"
        time.sleep(0.5)
    node.stop()
