"""Connection-level guards uvicorn lacks: a header deadline and a connection cap.

uvicorn bounds neither how long a client may take to send a request's headers (a client that
connects and sends nothing, or one header byte every few seconds, holds a socket and a
protocol object forever: slowloris) nor how many connections are open at once
(``limit_concurrency`` answers a bare text 503 without ``Retry-After``). ``guarded_protocol``
returns uvicorn's httptools protocol with both:

- from the moment a connection opens, and again from the first byte of every further request
  on it, the request line and headers must be complete within ``header_timeout`` seconds,
  else the connection is closed (the body has its own deadline in ``api.middleware``);
- a connection beyond ``max_connections`` open ones gets ``503`` with ``Retry-After`` and the
  API's JSON error body, then is closed, before anything is parsed.

The invariant: no socket is held by a client that does not finish its headers in time, and the
number of sockets (file descriptors) the HTTP server holds is bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2


def _busy_response() -> bytes:
    body = json.dumps(
        {
            "error": {
                "code": "too_many_connections",
                "message": "the node has as many open connections as it serves; retry later",
                "field": None,
            }
        },
        separators=(",", ":"),
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"retry-after: {RETRY_AFTER_SECONDS}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_BUSY = _busy_response()


def guarded_protocol(*, header_timeout: float, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a header deadline and a connection cap."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= max_connections:
                self._refused = True
                self.transport = transport
                log.warning("refusing a connection: %d open (the cap)", len(self.connections))
                transport.write(_BUSY)
                transport.close()
                return
            super().connection_made(transport)
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            if self._refused:
                return
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:
                self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._disarm_header_timer()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # idle between requests is uvicorn's keep-alive timeout; the next request's first
            # byte (on_message_begin) arms the header deadline again
            self._disarm_header_timer()

        def shutdown(self) -> None:
            if self._refused:
                return
            super().shutdown()

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.transport is not None and not self.transport.is_closing():
                log.info("closing a connection: headers not received within %gs", header_timeout)
                self.transport.close()

    return GuardedHttpToolsProtocol
