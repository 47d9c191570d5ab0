"""The Python client's private parts: its error classes, how an error answer maps to one, and
how each call is built (``_Call``: method, path, body, and the model its answer parses into).

``api.client`` re-exports the error classes; everything else here is private to it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import httpx
import orjson
from pydantic import BaseModel

from api.curation_schemas import AttestOut, ContributorOut
from api.schemas import QueryOptions, RevokeOut
from node.attestation import make_attestation
from node.cid import canonical_cid_string
from node.errors import KnowhubError
from node.signing import SigningKey
from node.tombstone import make_tombstone

M = TypeVar("M", bound=BaseModel)


class NodeError(Exception):
    """The node answered with an error, or could not be reached (``status`` 0)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class InvalidRequest(NodeError):
    """400, 405, 408, 415: the request was malformed; ``code`` and ``field`` say how."""


class PayloadTooLarge(InvalidRequest):
    """413: the body is over the node's limit."""


class Unauthorized(NodeError):
    """401: an API key or a contributor signature is missing or wrong (see ``code``)."""


class NotFound(NodeError):
    """404: no such fact, block or route."""


class Gone(NodeError):
    """410: the fact was revoked by its contributor; ``tombstone`` is the CID that says so."""

    def __init__(self, *args: Any, tombstone: str | None = None) -> None:
        super().__init__(*args)
        self.tombstone = tombstone


class RateLimited(NodeError):
    """429: over the node's rate limit; retry after ``retry_after`` seconds."""

    def __init__(self, *args: Any, retry_after: float = 1.0) -> None:
        super().__init__(*args)
        self.retry_after = retry_after


class NodeUnavailable(NodeError):
    """503 or another 5xx: the node is starting, stopping, busy or its storage failed.

    ``retry_after`` is the node's ``Retry-After`` in seconds when it sent one (its ingest
    queue or its connections are full: retry then), else None."""

    def __init__(self, *args: Any, retry_after: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after = retry_after


class Unreachable(NodeError):
    """No HTTP answer at all (connection refused, timeout)."""


_BY_STATUS: dict[int, type[NodeError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    404: NotFound,
    405: InvalidRequest,
    410: Gone,
    408: InvalidRequest,
    413: PayloadTooLarge,
    415: InvalidRequest,
    429: RateLimited,
}


def error_from(response: httpx.Response) -> NodeError:
    try:
        err = response.json()["error"]
        code, message, fld = str(err["code"]), str(err["message"]), err.get("field")
    except (ValueError, KeyError, TypeError):
        code, message, fld = "http_error", response.text[:500], None
    status = response.status_code
    kind = _BY_STATUS.get(status, NodeUnavailable if status >= 500 else NodeError)
    retry = _retry_after(response)
    if kind is RateLimited:
        return RateLimited(status, code, message, fld, retry_after=1.0 if retry is None else retry)
    if kind is NodeUnavailable:
        return NodeUnavailable(status, code, message, fld, retry_after=retry)
    if kind is Gone:
        return Gone(status, code, message, fld, tombstone=_tombstone(response))
    return kind(status, code, message, fld)


def _tombstone(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["tombstone"])
    except (ValueError, KeyError, TypeError):
        return None


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the node sends delta-seconds), None when absent or not a
    number."""
    try:
        value = float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
    return value if value >= 0 else None


@dataclass(frozen=True, slots=True)
class _Call(Generic[M]):
    """One request and the model its answer parses into (None: raw bytes)."""

    method: str
    path: str
    model: type[M] | None
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def _fact_body(
    text: str,
    metadata: Mapping[str, Any] | None,
    contributor: str | None,
    signature: str | None,
    supersedes: str | None = None,
    collection: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text}
    if supersedes is not None:
        body["supersedes"] = supersedes
    if collection is not None:
        body["collection"] = collection
    if metadata:
        body["metadata"] = dict(metadata)
    if contributor is not None:
        body["contributor"] = contributor
    if signature is not None:
        body["signature"] = signature
    return body


def _query_body(query: str, options: QueryOptions) -> dict[str, Any]:
    """The JSON body of ``POST /v1/query``: the options given, the node's defaults for the
    rest (the node validates them)."""
    body: dict[str, Any] = {"query": query}
    for key, value in options.items():
        if key == "filter":
            value = dict(cast("Mapping[str, Any]", value)) if value else None
        elif key == "collections" and value is not None:
            value = list(cast("Sequence[str]", value))
        elif key == "vector" and value is not None:
            value = [float(x) for x in cast("Sequence[float]", value)]
        elif key == "include_superseded":
            value = True if value else None
        if value is not None:
            body[key] = value
    return body


def _revoke_call(
    cid: str,
    key: SigningKey | None,
    contributor: str | None,
    signature: str | None,
    reason: str | None,
) -> _Call[RevokeOut]:
    """``DELETE /v1/facts/{cid}``; with ``key``, the tombstone is built and signed here (the
    same record the node builds: ``node.tombstone``), so the key never leaves the caller."""
    if key is not None:
        contributor = key.address
        try:
            tombstone = make_tombstone(canonical_cid_string(cid), contributor, reason)
        except KnowhubError as exc:
            raise InvalidRequest(0, exc.code, exc.message, exc.field) from exc
        signature = key.sign_cid(tombstone.cid)
    body: dict[str, str] = {}
    for name, value in (("contributor", contributor), ("signature", signature), ("reason", reason)):
        if value is not None:
            body[name] = value
    return _Call("DELETE", f"/v1/facts/{cid}", RevokeOut, body or None)


def _attest_call(
    cid: str,
    verdict: str,
    key: SigningKey | None,
    at: int | None,
    contributor: str | None,
    signature: str | None,
) -> _Call[AttestOut]:
    """``POST /v1/facts/{cid}/attestations``; with ``key``, the attestation is built and
    signed here (``node.attestation``, ``at`` defaulting to now), so the key never leaves the
    caller."""
    if key is not None:
        contributor = key.address
        at = int(time.time()) if at is None else at
        try:
            made = make_attestation(canonical_cid_string(cid), verdict, contributor, at)
        except KnowhubError as exc:
            raise InvalidRequest(0, exc.code, exc.message, exc.field) from exc
        signature = key.sign_cid(made.cid)
    body: dict[str, Any] = {"verdict": verdict}
    for name, value in (("contributor", contributor), ("at", at), ("signature", signature)):
        if value is not None:
            body[name] = value
    return _Call("POST", f"/v1/facts/{cid}/attestations", AttestOut, body)


def _contributor_call(address: str) -> _Call[ContributorOut]:
    return _Call("GET", f"/v1/contributors/{address}", ContributorOut)


def _block(cid: str) -> _Call[BaseModel]:
    return _Call("GET", f"/ipfs/{cid}", None, params={"format": "raw"})


def _car(cid: str, scope: str) -> _Call[BaseModel]:
    return _Call("GET", f"/ipfs/{cid}", None, params={"format": "car", "dag-scope": scope})


def _request(call: _Call[Any]) -> dict[str, Any]:
    """httpx's arguments for ``call``: a JSON body is encoded by orjson (a 384-number query
    vector in ~7 us instead of the standard library's ~140 us: most of a vector-in query's
    client time; Chroma's client does the same), after the check the standard encoder makes
    with ``allow_nan=False`` (orjson would send NaN and infinities as null)."""
    if call.json is None:
        return {"params": call.params, "headers": call.headers}
    _check_finite(call.json)
    return {
        "content": orjson.dumps(call.json),
        "params": call.params,
        "headers": {"content-type": "application/json", **call.headers},
    }


def _check_finite(value: Any) -> None:
    """``ValueError`` on a float that is NaN or infinite anywhere in a JSON value."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"JSON cannot carry the number {value!r}")
    elif isinstance(value, Mapping):
        for item in value.values():
            _check_finite(item)
    elif isinstance(value, list | tuple):
        if all(type(item) is float for item in value):  # a vector: one C-level pass
            if not all(map(math.isfinite, value)):
                raise ValueError("JSON cannot carry NaN or infinite numbers")
            return
        for item in value:
            _check_finite(item)


def _parse(response: httpx.Response, call: _Call[M]) -> Any:
    if response.status_code >= 400:
        raise error_from(response)
    if call.model is None:
        return response.content
    return call.model.model_validate_json(response.content)


def _headers(api_key: str | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get("KNOWHUB_API_KEY")
    return {"authorization": f"Bearer {key}"} if key else {}


CAR = "application/vnd.ipld.car"
