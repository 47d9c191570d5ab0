"""Error mapping and request shapes of the Python client, on httpx's mock transport."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from api.client import (
    AsyncNodeClient,
    InvalidRequest,
    NodeClient,
    NodeError,
    NodeUnavailable,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unreachable,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def error(status: int, code: str, field: str | None = None, **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": f"{code} happened", "field": field}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(
    ("response", "kind", "code"),
    [
        (error(400, "invalid_fact", "text"), InvalidRequest, "invalid_fact"),
        (error(401, "api_key_required"), Unauthorized, "api_key_required"),
        (error(404, "not_found"), NotFound, "not_found"),
        (error(413, "body_too_large"), PayloadTooLarge, "body_too_large"),
        (error(503, "storage_error"), NodeUnavailable, "storage_error"),
        (httpx.Response(502, text="bad gateway"), NodeUnavailable, "http_error"),
        (httpx.Response(418, text="teapot"), NodeError, "http_error"),
    ],
)
def test_errors_map_to_types(response: httpx.Response, kind: type[NodeError], code: str) -> None:
    client = NodeClient("http://node", transport=httpx.MockTransport(lambda r: response))
    with pytest.raises(kind) as caught:
        client.get("bafy")
    assert caught.value.code == code and caught.value.status == response.status_code
    assert type(caught.value) is kind


def test_rate_limited_carries_retry_after() -> None:
    transport = httpx.MockTransport(lambda r: error(429, "rate_limited", **{"retry-after": "7"}))
    with pytest.raises(RateLimited) as caught:
        NodeClient("http://node", transport=transport).status()
    assert caught.value.retry_after == 7.0


def test_a_busy_node_says_when_to_retry() -> None:
    busy = httpx.MockTransport(lambda r: error(503, "overloaded", **{"retry-after": "4"}))
    with pytest.raises(NodeUnavailable) as caught:
        NodeClient("http://node", transport=busy).status()
    assert caught.value.code == "overloaded" and caught.value.retry_after == 4.0
    down = httpx.MockTransport(lambda r: error(503, "storage_error"))
    with pytest.raises(NodeUnavailable) as failed:
        NodeClient("http://node", transport=down).status()
    assert failed.value.retry_after is None


def test_requests_carry_key_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"cid": "bafyx", "status": "created"})

    monkeypatch.setenv("KNOWHUB_API_KEY", "from-the-environment-123")
    client = NodeClient("http://node/", transport=httpx.MockTransport(answer))
    created = client.add("a fact", {"lang": "en"})
    assert created.cid == "bafyx" and created.status == "created"
    assert seen[0].headers["authorization"] == "Bearer from-the-environment-123"
    assert json.loads(seen[0].content) == {"text": "a fact", "metadata": {"lang": "en"}}
    explicit = NodeClient("http://node", api_key="given", transport=httpx.MockTransport(answer))
    explicit.add("x")
    assert seen[1].headers["authorization"] == "Bearer given"


def test_a_query_vector_carries_its_model_cid() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"results": [], "context": ""})

    client = NodeClient("http://node", transport=httpx.MockTransport(answer))
    client.query("q", vector=(1, 0.5), model_cid="bafyreimodel")
    assert json.loads(seen[0].content) == {
        "query": "q",
        "vector": [1.0, 0.5],
        "model_cid": "bafyreimodel",
    }


def test_bodies_are_json_the_standard_library_reads_back() -> None:
    """orjson encodes request bodies: the same JSON values (unicode, nesting, a float vector
    from numpy), and a JSON content type."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"results": [], "context": ""})

    client = NodeClient("http://node", transport=httpx.MockTransport(answer))
    vector = np.linspace(-1.0, 1.0, 384, dtype=np.float32)
    flt = {"$and": [{"lang": "ünï"}, {"year": {"$gte": 2020}}]}
    client.query("α \U0001f600 q", vector=vector.tolist(), filter=flt, min_score=0.25, k=3)
    assert seen[0].headers["content-type"] == "application/json"
    assert json.loads(seen[0].content) == {
        "query": "α \U0001f600 q",
        "vector": [float(x) for x in vector],
        "filter": flt,
        "min_score": 0.25,
        "k": 3,
    }


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused_before_sending(bad: float) -> None:
    """orjson would send them as null (a vector of nulls, or no min_score at all): the client
    refuses them as the standard encoder did."""
    sent: list[httpx.Request] = []
    client = NodeClient("http://node", transport=httpx.MockTransport(sent.append))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.query("q", vector=[0.5, bad])
    with pytest.raises(ValueError):
        client.query("q", min_score=bad)
    with pytest.raises(ValueError):
        client.query("q", filter={"score": {"$lt": bad}})
    assert sent == []


def test_unreachable() -> None:
    with pytest.raises(Unreachable) as caught:
        NodeClient("http://127.0.0.1:9", timeout=2).health()
    assert caught.value.status == 0


async def test_async_client_maps_errors_too() -> None:
    transport = httpx.MockTransport(lambda r: error(400, "invalid_query", "k"))
    async with AsyncNodeClient("http://node", transport=transport) as client:
        with pytest.raises(InvalidRequest) as caught:
            await client.query("x", k=0)
    assert caught.value.field == "k"
