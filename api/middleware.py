"""Pure ASGI guards that run before FastAPI parses anything.

``BodyGuard`` reads a request body completely before the app sees it: over ``max_bytes`` is
413 (from Content-Length at once, or as soon as the stream passes the limit), a body not
complete ``timeout`` seconds after the request started is 408 (one deadline for the whole
body, not per chunk: a byte every few seconds does not hold a request open), a JSON endpoint
called with another content type is 415, and a JSON body nested deeper than
``MAX_JSON_DEPTH`` is 400 before any JSON parser sees it (on every route, ``/mcp`` included).
Nothing reaches the app half-read, so nothing hangs on a slow client, and no parser recurses
on attacker-chosen depth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = {"POST", "PUT", "PATCH"}

#: Deepest JSON nesting any request may use. The deepest real request is an MCP call with a
#: metadata filter, ``{"params": {"arguments": {"filter": {"k": {"$in": [...]}}}}}``: 6 levels.
MAX_JSON_DEPTH = 32

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def may_be_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Cheap (C-speed) pre-check: a body with at most ``limit`` opening brackets cannot nest
    deeper than ``limit``; only the others are scanned (in a worker thread)."""
    return body.count(b"[") + body.count(b"{") > limit


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``body``, read as JSON, nests arrays/objects deeper than ``limit``.

    Brackets inside strings do not count. Linear in the body; the cheap count first means
    ordinary bodies (few brackets) are never scanned. Malformed JSON is left to the parser.
    """
    if not may_be_deep(body, limit):
        return False
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class BodyGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        timeout: float,
        json_prefixes: tuple[str, ...] = ("/v1/",),
        stream_paths: tuple[str, ...] = (),
    ) -> None:
        self.stream_paths = stream_paths
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.json_prefixes = json_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _BODY_METHODS
            or scope["path"] in self.stream_paths  # these routes stream and limit themselves
        ):
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        if has_body and scope["path"].startswith(self.json_prefixes):
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                await _reject(
                    send,
                    415,
                    "unsupported_media_type",
                    f"send the body as application/json, not {ctype or 'nothing'!r}",
                )
                return
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _reject(send, 400, "bad_content_length", "Content-Length is not a number")
                return
            if int(declared) > self.max_bytes:
                await _reject(
                    send,
                    413,
                    "body_too_large",
                    f"body of {declared} bytes is over the limit of {self.max_bytes}",
                )
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        deadline = anyio.current_time() + self.timeout  # for the whole body
        while more:
            with anyio.move_on_after(deadline - anyio.current_time()) as scope_timer:
                message = await receive()
            if scope_timer.cancelled_caught:
                await _reject(
                    send,
                    408,
                    "body_timeout",
                    f"request body not received within {self.timeout:g} s",
                )
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reject(
                    send, 413, "body_too_large", f"body is over the limit of {self.max_bytes} bytes"
                )
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        # every body, whatever its declared type: some parsers (MCP's) do not go by the header
        if may_be_deep(body) and await anyio.to_thread.run_sync(json_depth_exceeds, body):
            await send_error(
                send,
                400,
                "json_too_deep",
                f"request JSON nests deeper than {MAX_JSON_DEPTH} levels",
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _reject(send: Send, status: int, code: str, message: str) -> None:
    # the body may be half-sent: close the connection rather than read the rest
    await send_error(send, status, code, message, [(b"connection", b"close")])


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with the API's JSON error body from a pure ASGI middleware."""
    payload = json.dumps(
        {"error": {"code": code, "message": message, "field": None}}, separators=(",", ":")
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
