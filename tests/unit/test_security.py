"""API keys, rate limits, request ids, JSON logs and request metrics on a minimal ASGI app."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.metrics import Metrics
from api.observability import JsonFormatter, RequestContext, RequestIdFilter, request_id_var
from api.security import AccessGuard, AccessPolicy, Rate, TokenBuckets, parse_keys, parse_rate

pytestmark = pytest.mark.anyio
KEY = "k" * 20
OTHER = "o" * 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def echo(request: Request) -> Response:
    logging.getLogger("tests.echo").info("handling")
    return JSONResponse({"ok": True, "request_id": request_id_var.get()})


def make_app(policy: AccessPolicy, clock: Clock | None = None) -> tuple[Starlette, Metrics]:
    routes = [
        Route("/healthz", echo),
        Route("/v1/facts", echo, methods=["POST"]),
        Route("/v1/facts/{cid}", echo),
        Route("/v1/query", echo, methods=["POST"]),
        Route("/v1/peers/{peer}", echo, methods=["DELETE"]),
    ]
    metrics = Metrics()
    app = Starlette(routes=routes)
    app.add_middleware(AccessGuard, policy=policy, clock=clock or Clock())
    app.add_middleware(RequestContext, metrics=metrics)
    return app, metrics


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node")


def test_parse_rate_and_keys() -> None:
    assert parse_rate("600/minute") == Rate(600, 60.0)
    assert parse_rate("5/s") == Rate(5, 1.0)
    assert parse_rate("off") is None and parse_rate("") is None
    for bad in ("ten/minute", "5/fortnight", "0/second", "5"):
        with pytest.raises(ValueError, match="rate limit"):
            parse_rate(bad)
    assert parse_keys(f" {KEY} , {OTHER} ") == (KEY, OTHER)
    with pytest.raises(ValueError, match="16 characters"):
        parse_keys("short")


def test_token_bucket_refills_at_the_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(Rate(3, 60.0), clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(20.0)  # one token per 20 s
    assert buckets.take("b") == 0  # clients are separate
    clock.now += 20.0
    assert buckets.take("a") == 0
    assert buckets.take("a") > 0


def test_token_bucket_table_is_bounded() -> None:
    buckets = TokenBuckets(Rate(1, 60.0), max_clients=2, clock=Clock())
    for name in ("a", "b", "c"):
        buckets.take(name)
    assert buckets.take("a") == 0  # forgotten, so it starts full again: only ever more lenient
    assert buckets.take("c") > 0


async def test_writes_need_a_key_reads_do_not() -> None:
    app, _ = make_app(AccessPolicy(api_keys=(KEY,)))
    async with client(app) as c:
        refused = await c.post("/v1/facts", json={})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["error"]["code"] == "api_key_required"
        assert (await c.delete("/v1/peers/x")).status_code == 401
        assert (await c.post("/v1/facts", json={}, headers={"x-api-key": KEY})).status_code == 200
        bearer = {"authorization": f"Bearer {KEY}"}
        assert (await c.post("/v1/facts", json={}, headers=bearer)).status_code == 200
        assert (await c.post("/v1/query", json={})).status_code == 200  # a read
        assert (await c.get("/v1/facts/abc")).status_code == 200
        wrong = await c.get("/v1/facts/abc", headers={"x-api-key": OTHER})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


async def test_private_reads_and_open_health() -> None:
    app, _ = make_app(AccessPolicy(api_keys=(KEY,), public_reads=False))
    async with client(app) as c:
        assert (await c.get("/v1/facts/abc")).status_code == 401
        assert (await c.post("/v1/query", json={})).status_code == 401
        assert (await c.get("/v1/facts/abc", headers={"x-api-key": KEY})).status_code == 200
        assert (await c.get("/healthz")).status_code == 200


async def test_without_keys_everything_is_open_and_keys_are_ignored() -> None:
    app, _ = make_app(AccessPolicy())
    async with client(app) as c:
        assert (await c.post("/v1/facts", json={})).status_code == 200
        assert (await c.post("/v1/facts", json={}, headers={"x-api-key": OTHER})).status_code == 200


async def test_rate_limits_per_client_and_class() -> None:
    clock = Clock()
    policy = AccessPolicy(api_keys=(KEY, OTHER), read_rate=Rate(3, 60.0), write_rate=Rate(2, 60.0))
    app, _ = make_app(policy, clock)
    async with client(app) as c:
        key = {"x-api-key": KEY}
        assert [
            (await c.post("/v1/facts", json={}, headers=key)).status_code for _ in range(2)
        ] == [
            200,
            200,
        ]
        limited = await c.post("/v1/facts", json={}, headers=key)
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert limited.headers["retry-after"] == "30"  # 2 per minute: next token in 30 s
        # reads are counted apart, and another key is another client
        assert (await c.get("/v1/facts/a", headers=key)).status_code == 200
        assert (await c.post("/v1/facts", json={}, headers={"x-api-key": OTHER})).status_code == 200
        # anonymous reads are limited by address
        codes = [(await c.get("/v1/facts/a")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        clock.now += 30.0
        assert (await c.post("/v1/facts", json={}, headers=key)).status_code == 200


async def test_request_ids_logs_and_metrics(caplog: pytest.LogCaptureFixture) -> None:
    app, metrics = make_app(AccessPolicy())
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO):
        async with client(app) as c:
            given = await c.get("/v1/facts/abc", headers={"x-request-id": "trace-42"})
            made = await c.get("/v1/facts/def", headers={"x-request-id": "bad id with spaces"})
            await c.post("/v1/facts", json={})
            await c.post("/v1/query", json={})
    assert given.headers["x-request-id"] == "trace-42" == given.json()["request_id"]
    assert made.headers["x-request-id"] != "bad id with spaces"
    assert len(made.headers["x-request-id"]) == 32
    handled = [r for r in caplog.records if r.name == "tests.echo"]
    assert [getattr(r, "request_id", None) for r in handled][:1] == ["trace-42"]
    access = [r for r in caplog.records if r.name == "knowhub.access"]
    assert len(access) == 4
    line = json.loads(JsonFormatter().format(access[0]))
    assert line["request_id"] == "trace-42"
    assert line["route"] == "/v1/facts/{cid}" and line["status"] == 200
    assert line["level"] == "info" and line["logger"] == "knowhub.access"

    from prometheus_client import generate_latest

    families = {
        f.name: f
        for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())
    }
    requests = {
        (s.labels["method"], s.labels["route"]): s.value
        for s in families["knowhub_http_requests"].samples
        if s.name == "knowhub_http_requests_total"
    }
    assert requests[("GET", "/v1/facts/{cid}")] == 2  # by template, not by raw path
    counts = {
        s.name: s.value
        for fam in ("knowhub_ingest_duration_seconds", "knowhub_query_duration_seconds")
        for s in families[fam].samples
        if s.name.endswith("_count")
    }
    assert counts == {
        "knowhub_ingest_duration_seconds_count": 1,
        "knowhub_query_duration_seconds_count": 1,
    }


def test_json_formatter_keeps_extras_and_exceptions() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("here",), None)
    record.peer = "12D3"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    out = json.loads(JsonFormatter().format(record))
    assert out["message"] == "failed here" and out["peer"] == "12D3"
    assert "RuntimeError: boom" in out["exc"]


async def test_cors_preflight_is_answered_before_the_key_check() -> None:
    from api.app import create_app
    from api.options import ApiOptions

    def no_node() -> Any:
        raise AssertionError("the lifespan does not run here")

    options = ApiOptions(
        access=AccessPolicy(api_keys=(KEY,), public_reads=False),
        cors_origins=("https://app.example",),
    )
    app = create_app(no_node, options)
    preflight = {
        "origin": "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://node"
    ) as c:
        ok = await c.options("/v1/facts", headers=preflight)
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        other = await c.options(
            "/v1/facts", headers={**preflight, "origin": "https://evil.example"}
        )
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers
        refused = await c.post("/v1/facts", json={}, headers={"origin": "https://app.example"})
        assert refused.status_code == 401  # CORS does not bypass keys
        assert refused.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in refused.headers["access-control-expose-headers"].lower()
