"""Map errors to HTTP responses in one place. Every error body is ``{"error": {...}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from node.errors import (
    ChainError,
    InvalidInput,
    KnowhubError,
    NotFound,
    StorageError,
    Unauthorized,
    Unavailable,
)

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[KnowhubError], int]] = [
    (NotFound, 404),
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
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, headers=headers)


def error_dict(exc: KnowhubError) -> dict[str, str | None]:
    return {"code": exc.code, "message": exc.message, "field": exc.field}


def describe_validation(exc: RequestValidationError) -> tuple[str, str, str | None]:
    """(code, message, field) for the first problem pydantic found."""
    errors = exc.errors()
    if not errors:
        return "invalid_request", "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    field = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx", {}) or {}
        return "malformed_json", f"request body is not valid JSON: {ctx.get('error', '')}", None
    if first.get("type") == "missing" and field is None:
        return "missing_body", "request body is required (a JSON object)", None
    message = f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return "invalid_request", message, field


def install(app: FastAPI) -> None:
    @app.exception_handler(KnowhubError)
    async def _knowhub(_: Request, exc: KnowhubError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.error("request failed: %s", exc.message)
        return error_response(status, exc.code, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, field = describe_validation(exc)
        return error_response(400, code, message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(
            exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal error; see the node's log")
