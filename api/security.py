"""Access control before anything else runs: API keys for writes, per-client rate limits.

``AccessGuard`` is a pure ASGI middleware. Every HTTP request is classified as a *write*
(POST, PUT, PATCH, DELETE, except the read-only ``POST /v1/query``) or a *read*; ``/healthz``
is always open. With keys configured a write needs one, and so does a read unless reads are
public; a key that is presented but wrong is refused even where none is needed, so a typo is
never silently ignored (without configured keys, presented ones are ignored). Refusals are
JSON like every other error: 401 with ``WWW-Authenticate: Bearer``, 429 with ``Retry-After``
(whole seconds).

Rate limits are token buckets per client and class (reads and writes are counted apart): a
bucket holds ``limit`` tokens and refills ``limit`` per ``period``. A client is its API key
(by hash) when it sent a valid one, else the peer address uvicorn resolved (trusted proxies'
``X-Forwarded-For`` included). The bucket table is bounded; the least recently seen client is
forgotten first, which can only ever make a limit more lenient.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from api.middleware import send_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# POSTs that only read; /mcp carries MCP calls, and its write tool checks the key itself.
_READ_POSTS = {"/v1/query", "/mcp"}
_OPEN_PATHS = {"/healthz"}
_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    limit: int
    period: float

    @property
    def per_second(self) -> float:
        return self.limit / self.period


def parse_rate(text: str) -> Rate | None:
    """``"600/minute"`` -> Rate(600, 60.0); ``"off"`` or ``""`` -> None; else ValueError."""
    if text.strip().lower() in {"", "off", "none", "0"}:
        return None
    match = _RATE.match(text.lower())
    if match is None or match.group(2) not in _PERIODS or int(match.group(1)) < 1:
        raise ValueError(
            f"rate limit {text!r} is not 'N/second', 'N/minute' or 'N/hour' with N >= 1 (or 'off')"
        )
    return Rate(int(match.group(1)), _PERIODS[match.group(2)])


def parse_keys(text: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    for key in keys:
        if len(key) < 16:
            raise ValueError("every API key must be at least 16 characters long")
    return keys


class TokenBuckets:
    """Token buckets keyed by client; ``take`` answers 0 (allowed) or seconds to wait."""

    def __init__(self, rate: Rate, *, max_clients: int = 100_000, clock: Callable[[], float]):
        self._rate = rate
        self._max = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float:
        now = self._clock()
        tokens, last = self._buckets.pop(client, (float(self._rate.limit), now))
        tokens = min(float(self._rate.limit), tokens + (now - last) * self._rate.per_second)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self._rate.per_second
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    api_keys: tuple[str, ...] = ()
    public_reads: bool = True
    read_rate: Rate | None = None
    write_rate: Rate | None = None


class AccessGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        policy: AccessPolicy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.policy = policy
        self._digests = [hashlib.sha256(k.encode()).digest() for k in policy.api_keys]
        self._buckets = {
            kind: TokenBuckets(rate, clock=clock)
            for kind, rate in (("read", policy.read_rate), ("write", policy.write_rate))
            if rate is not None
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        write = scope["method"] in _WRITE_METHODS and scope["path"] not in _READ_POSTS
        kind = "write" if write else "read"
        presented = _presented_key(scope)
        key_id: str | None = None
        if presented is not None and self._digests:
            key_id = self._check(presented)
            if key_id is None:
                await _refuse(send, 401, "invalid_api_key", "the API key is not valid")
                return
        elif self._digests and (write or not self.policy.public_reads):
            await _refuse(
                send,
                401,
                "api_key_required",
                f"{kind} requests need an API key: 'Authorization: Bearer KEY' or 'X-API-Key'",
            )
            return
        buckets = self._buckets.get(kind)
        if buckets is not None:
            client = f"key:{key_id}" if key_id else f"ip:{(scope.get('client') or ('?',))[0]}"
            wait = buckets.take(client)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                await _refuse(
                    send,
                    429,
                    "rate_limited",
                    f"over the {kind} rate limit for this client; retry in {retry} s",
                    [(b"retry-after", str(retry).encode())],
                )
                return
        scope.setdefault("state", {})["api_key_id"] = key_id
        await self.app(scope, receive, send)

    def _check(self, presented: str) -> str | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found = False
        for known in self._digests:  # compare with all, in constant time each
            found |= hmac.compare_digest(digest, known)
        return digest.hex()[:12] if found else None


def has_api_key(scope: Scope) -> bool:
    """Whether this request carried a valid API key (``ApiKeys`` marked it): the operator."""
    return bool((scope.get("state") or {}).get("api_key_id"))


def _presented_key(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-api-key":
            return str(value.decode("latin-1").strip())
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return str(token.strip())
    return None


async def _refuse(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    extra = list(headers or [])
    if status == 401:
        extra.append((b"www-authenticate", b'Bearer realm="knowhub"'))
    await send_error(send, status, code, message, extra)
