"""api.json_body: a request body parses to what ``json.loads`` gives, or fails as it fails,
whether orjson or the standard library took it."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.json_body import JsonRoute, _OrjsonRequest

pytestmark = pytest.mark.anyio

BODIES = [
    b'{"query": "cells", "k": 5, "vector": [0.1, -2.5e-3, 1e-320, 3e38, -0.0]}',
    b'{"a": 1, "a": 2}',  # the last duplicate wins
    b'{"text": "\\u00fc\\ud83d\\ude00 \xc3\xa9"}',  # escapes, a surrogate pair, raw UTF-8
    b'{"text": "a \\ud800 b"}',  # a lone surrogate: only the standard library reads it
    b'{"m": {"\\udc80": "x"}}',
    b'{"x": NaN, "y": Infinity, "z": -Infinity}',
    b'{"big": 123456789012345678901234567890, "huge": 1e400, "tiny": 1e-400}',
    b"[" * 50 + b"]" * 50,
    b'  {"spaced" : [ 1 , 2 ] }  ',
    b"1.5",
    b'"just a string"',
]
BROKEN = [b"", b"{", b'{"a": }', b"\xff\xfe", b'{"a": "\xff"}', b"[1, 2,]", b"{'a': 1}"]


async def parsed(body: bytes) -> Any:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    return await _OrjsonRequest(scope, receive).json()


def same(a: Any, b: Any) -> bool:
    """Equal JSON values, NaN equal to NaN and types compared (1 is not 1.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("body", BODIES)
async def test_values_equal_the_standard_librarys(body: bytes) -> None:
    assert same(await parsed(body), json.loads(body))


@pytest.mark.parametrize("body", BROKEN)
async def test_errors_are_the_standard_librarys(body: bytes) -> None:
    with pytest.raises(Exception) as expected:
        json.loads(body)
    with pytest.raises(type(expected.value)):
        await parsed(body)


def test_routes_parse_their_bodies_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = orjson.loads

    def counted(body: bytes) -> Any:
        calls.append(body)
        return real(body)

    monkeypatch.setattr(orjson, "loads", counted)
    app = FastAPI()
    app.router.route_class = JsonRoute
    seen: list[Any] = []

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, int]:
        seen.append(body)
        return {"keys": len(body)}

    client = TestClient(app)
    json_type = {"content-type": "application/json"}
    answer = client.post("/echo", content=b'{"text": "a \\ud800 b", "v": [1.5]}', headers=json_type)
    assert answer.status_code == 200 and seen[0] == {"text": "a \ud800 b", "v": [1.5]}
    assert client.post("/echo", content=b'{"v": [1.5, 2]}', headers=json_type).json() == {"keys": 1}
    assert seen[1] == {"v": [1.5, 2]}
    assert client.post("/echo", content=b'{"v": ', headers=json_type).status_code == 422
    assert len(calls) == 3  # orjson tried each body first
