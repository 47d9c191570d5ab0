"""JSON request bodies parsed by orjson, with the standard library's answer wherever it refuses.

FastAPI parses a JSON body with ``json.loads``: ~60 us for a query carrying a 384-number vector,
a tenth of what the node spends on such a query outside its search. ``JsonRoute`` (every API
router's route class) hands its endpoints a request whose ``json()`` tries orjson first
(~7 us) and, on any body orjson refuses, returns what ``json.loads`` returns or raises.

Invariant: a body parses to the same value, or fails with the same error, as with
``json.loads`` alone. orjson refuses what the standard library reads differently (lone
surrogate escapes, ``NaN`` and ``Infinity``, integers beyond 64 bits, nesting past 1024,
invalid UTF-8), so each of those takes the standard library's path; on what both accept they
agree (objects, last duplicate key wins, correctly rounded floats). Hostile-input tests hold
the error answers to what they were.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class _OrjsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:
                self._json = json.loads(body)
        return self._json


class JsonRoute(APIRoute):
    """FastAPI's route, its request's JSON body parsed by orjson (``_OrjsonRequest``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(_OrjsonRequest(request.scope, request.receive))

        return route
