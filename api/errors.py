"""Map errors to HTTP responses in one place. Every error body is ``{"error": {...}}``."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from node.errors import (
    ChainError,
    CollectionNotHeld,
    Hidden,
    InvalidInput,
    KnowhubError,
    NotContributor,
    NotFound,
    Overloaded,
    Revoked,
    StorageError,
    Unauthorized,
    Unavailable,
    printable,
)

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[KnowhubError], int]] = [
    (NotFound, 404),
    (Revoked, 410),
    (Hidden, 451),
    (CollectionNotHeld, 409),
    (NotContributor, 403),
    (Unauthorized, 401),
    (ChainError, 502),
    (InvalidInput, 400),
    (Unavailable, 503),
    (StorageError, 503),
]


def status_for(exc: KnowhubError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    tombstone: str | None = None,
    holders: tuple[str, ...] = (),
) -> JSONResponse:
    field = None if field is None else printable(field)
    detail: dict[str, object] = {"code": code, "message": printable(message), "field": field}
    if tombstone is not None:
        detail["tombstone"] = tombstone
    if holders:
        detail["holders"] = list(holders)
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


def retry_after_header(exc: KnowhubError) -> dict[str, str] | None:
    """``Retry-After`` (whole seconds, at least 1) for an error that says when to retry."""
    if isinstance(exc, Overloaded):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return None


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods some route of ``app`` answers on the path of ``scope``."""
    routes = list(_leaf_routes(app.router.routes))
    matches = {
        method: [route.matches({**scope, "method": method}) for route in routes]
        for method in _METHODS
    }
    full = {
        m: [child for match, child in found if match is Match.FULL] for m, found in matches.items()
    }
    # a literal path (/v1/facts/batch) is not also the template it happens to fit (/v1/facts/{cid})
    literal = any(not child.get("path_params") for found in full.values() for child in found)
    return [
        method
        for method, found in full.items()
        if any(not (literal and child.get("path_params")) for child in found)
    ]


def _leaf_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included APIRouter
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        else:
            yield route


def error_dict(exc: KnowhubError) -> dict[str, str | None]:
    out = {"code": exc.code, "message": exc.message, "field": exc.field}
    if isinstance(exc, Revoked):
        out["tombstone"] = exc.tombstone
    return out


def describe_validation(exc: RequestValidationError) -> tuple[str, str, str | None]:
    """(code, message, field) for the first problem pydantic found."""
    errors = exc.errors()
    if not errors:
        return "invalid_request", "invalid request", None
    first = errors[0]
    field = _location(first) or None
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx", {}) or {}
        return "malformed_json", f"request body is not valid JSON: {ctx.get('error', '')}", None
    if first.get("type") == "missing" and field is None:
        return "missing_body", "request body is required (a JSON object)", None
    problems = [_problem(e) for e in errors]
    message = problems[0]
    if len(problems) > 1:  # name every problem, up to a bound: the caller fixes them in one go
        shown = problems[1:_PROBLEMS_SHOWN]
        message += "; also " + "; ".join(shown)
        if len(problems) > _PROBLEMS_SHOWN:
            message += f"; and {len(problems) - _PROBLEMS_SHOWN} more"
    return "invalid_request", message, field


_PROBLEMS_SHOWN = 5


def _location(error: Any) -> str:
    """Where in the body a pydantic error is ("metadata.lang"), "" for the body itself."""
    return ".".join(str(p) for p in error.get("loc", ()) if p != "body")


def _problem(error: Any) -> str:
    loc = _location(error)
    return f"{loc}: {error.get('msg')}" if loc else str(error.get("msg"))


def install(app: FastAPI) -> None:
    @app.exception_handler(KnowhubError)
    async def _knowhub(_: Request, exc: KnowhubError) -> JSONResponse:
        status = status_for(exc)
        headers = retry_after_header(exc)
        if status >= 500 and headers is None:  # a full queue is the node working as designed
            log.error("request failed: %s", exc.message)
        tombstone = exc.tombstone if isinstance(exc, Revoked) else None
        holders = exc.holders if isinstance(exc, CollectionNotHeld) else ()
        return error_response(
            status,
            exc.code,
            exc.message,
            exc.field,
            headers=headers,
            tombstone=tombstone,
            holders=holders,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, field = describe_validation(exc)
        return error_response(400, code, message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return error_response(exc.status_code, code, str(exc.detail), headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal error; see the node's log")
