"""Pure ASGI guards that run before FastAPI parses anything.

``BodyGuard`` reads a request body completely before the app sees it: over ``max_bytes`` is
413 (from Content-Length at once, or as soon as the stream passes the limit), a client that
stalls longer than ``timeout`` seconds is 408, and a JSON endpoint called with another
content type is 415. Nothing reaches the app half-read, so nothing hangs on a slow client.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = {"POST", "PUT", "PATCH"}


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
        while more:
            with anyio.move_on_after(self.timeout) as scope_timer:
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
