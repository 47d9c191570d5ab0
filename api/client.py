"""Python client for a knowhub node, on httpx: ``NodeClient`` (sync) and ``AsyncNodeClient``.

Both cover every REST endpoint with the same methods and typed results (the API's own response
schemas from ``api.schemas``), and raise the node's errors as ``NodeError`` subclasses that keep
the error body's ``code``, ``message`` and ``field``::

    with NodeClient("http://127.0.0.1:8700", api_key="...") as node:
        created = node.add("Water boils at 100 °C at sea level.", {"topic": "physics"})
        hits = node.query("boiling point of water", k=3).results

    async with AsyncNodeClient(url) as node:
        bundle = await node.provenance(created.cid)

The API key defaults to ``$KNOWHUB_API_KEY`` and is sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Unpack

import anyio
import httpx

from api.client_calls import (
    CAR,
    Gone,
    InvalidRequest,
    M,
    NodeError,
    NodeUnavailable,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unreachable,
    _attest_call,
    _block,
    _Call,
    _car,
    _contributor_call,
    _fact_body,
    _headers,
    _parse,
    _query_body,
    _request,
    _revoke_call,
    error_from,
)
from api.curation_schemas import AttestOut, ContributorOut
from api.schemas import (
    BatchOut,
    FactCreated,
    FactOut,
    Health,
    HiddenList,
    HideOut,
    ImportOut,
    PeerConnected,
    PeersOut,
    ProvenanceOut,
    QueryOptions,
    QueryOut,
    RevokeOut,
    SnapshotOut,
    StatusOut,
)
from node.signing import SigningKey

DEFAULT_URL = "http://127.0.0.1:8700"

__all__ = [
    "AsyncNodeClient",
    "Gone",
    "InvalidRequest",
    "NodeClient",
    "NodeError",
    "NodeUnavailable",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthorized",
    "Unreachable",
    "error_from",
]


class NodeClient:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``api_key`` defaults to ``$KNOWHUB_API_KEY``."""
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, transport=transport, headers=_headers(api_key)
        )

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: _Call[M]) -> Any:
        try:
            response = self._http.request(call.method, call.path, **_request(call))
        except httpx.HTTPError as exc:
            raise Unreachable(0, "unreachable", f"cannot reach node at {self.url}: {exc}") from exc
        return _parse(response, call)

    # -- facts --------------------------------------------------------------------------------

    def add(
        self,
        text: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        contributor: str | None = None,
        signature: str | None = None,
        supersedes: str | None = None,
        collection: str | None = None,
    ) -> FactCreated:
        """Contribute one fact (``POST /v1/facts``); ``status`` is created or exists.
        ``supersedes``: the CID of an earlier fact of the same contributor it corrects;
        ``collection``: the fact's collection (None: the default one)."""
        body = _fact_body(text, metadata, contributor, signature, supersedes, collection)
        result: FactCreated = self._run(_Call("POST", "/v1/facts", FactCreated, body))
        return result

    def add_batch(self, facts: Sequence[Mapping[str, Any]]) -> BatchOut:
        """Contribute up to 1,000 facts; each item succeeds or fails on its own."""
        call = _Call("POST", "/v1/facts/batch", BatchOut, {"facts": [dict(f) for f in facts]})
        result: BatchOut = self._run(call)
        return result

    def get(self, cid: str) -> FactOut:
        result: FactOut = self._run(_Call("GET", f"/v1/facts/{cid}", FactOut))
        return result

    def provenance(self, cid: str) -> ProvenanceOut:
        """The provenance bundle ``knowhub verify`` checks against the chain."""
        call = _Call("GET", f"/v1/facts/{cid}/provenance", ProvenanceOut)
        result: ProvenanceOut = self._run(call)
        return result

    def revoke(
        self,
        cid: str,
        *,
        key: SigningKey | None = None,
        contributor: str | None = None,
        signature: str | None = None,
        reason: str | None = None,
    ) -> RevokeOut:
        """Revoke a fact: sign its tombstone with ``key`` (the contributor's), or pass a
        ``contributor`` and ``signature`` made elsewhere, or neither to have the operator key
        revoke a fact the node signed (needs the API key)."""
        result: RevokeOut = self._run(_revoke_call(cid, key, contributor, signature, reason))
        return result

    def attest(
        self,
        cid: str,
        verdict: str,
        *,
        key: SigningKey | None = None,
        at: int | None = None,
        contributor: str | None = None,
        signature: str | None = None,
    ) -> AttestOut:
        """Endorse or dispute a fact: sign the attestation with ``key``, or pass a
        ``contributor``, ``at`` and ``signature`` made elsewhere, or none of them to attest
        with the operator key (needs the API key)."""
        result: AttestOut = self._run(_attest_call(cid, verdict, key, at, contributor, signature))
        return result

    def contributor(self, address: str) -> ContributorOut:
        """The node's view of a contributor: reputation, facts, attestations."""
        result: ContributorOut = self._run(_contributor_call(address))
        return result

    def query(self, query: str, **options: Unpack[QueryOptions]) -> QueryOut:
        """Ranked facts for ``query``; ``options`` are ``QueryIn``'s fields (k, mode, filter,
        min_score, vector, model_cid, include_superseded, min_relevance, proofs)."""
        call = _Call("POST", "/v1/query", QueryOut, _query_body(query, options))
        result: QueryOut = self._run(call)
        return result

    # -- node, peers, metrics -----------------------------------------------------------------

    def status(self) -> StatusOut:
        result: StatusOut = self._run(_Call("GET", "/v1/status", StatusOut))
        return result

    # -- moderation (operator: needs the API key) ---------------------------------------------

    def hide(self, cid: str, reason: str | None = None) -> HideOut:
        """Hide a fact on this node (not served, searched or forwarded here)."""
        body = {"cid": cid} | ({"reason": reason} if reason is not None else {})
        result: HideOut = self._run(_Call("POST", "/v1/moderation/hidden", HideOut, body))
        return result

    def unhide(self, cid: str) -> HideOut:
        result: HideOut = self._run(_Call("DELETE", f"/v1/moderation/hidden/{cid}", HideOut))
        return result

    def hidden(self, limit: int = 1000) -> HiddenList:
        call = _Call("GET", "/v1/moderation/hidden", HiddenList, params={"limit": str(limit)})
        result: HiddenList = self._run(call)
        return result

    def health(self) -> Health:
        result: Health = self._run(_Call("GET", "/healthz", Health))
        return result

    def peers(self) -> PeersOut:
        result: PeersOut = self._run(_Call("GET", "/v1/peers", PeersOut))
        return result

    def connect_peer(self, address: str) -> PeerConnected:
        call = _Call("POST", "/v1/peers", PeerConnected, {"address": address})
        result: PeerConnected = self._run(call)
        return result

    def disconnect_peer(self, peer_id: str, block_seconds: float = 600.0) -> None:
        params = {"block_seconds": str(block_seconds)}
        self._run(_Call("DELETE", f"/v1/peers/{peer_id}", None, params=params))

    def metrics(self) -> str:
        """The Prometheus text of ``GET /metrics``."""
        data: bytes = self._run(_Call("GET", "/metrics", None))
        return data.decode()

    # -- IPFS ---------------------------------------------------------------------------------

    def block(self, cid: str) -> bytes:
        """The raw block (trustless gateway); check it with ``node.cid`` if you trust no one."""
        data: bytes = self._run(_block(cid))
        return data

    def car(self, cid: str, scope: str = "all") -> bytes:
        data: bytes = self._run(_car(cid, scope))
        return data

    def snapshot(self) -> SnapshotOut:
        result: SnapshotOut = self._run(_Call("POST", "/v1/snapshots", SnapshotOut))
        return result

    def download(self, path: str, target: Path, progress: Callable[[int], object]) -> int:
        """Stream ``path`` (e.g. a CAR URL) into ``target`` atomically; return bytes written."""
        tmp = target.with_name(target.name + ".part")
        size = 0
        try:
            with self._http.stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from(response)
                with tmp.open("wb") as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
                        size += len(chunk)
                        progress(len(chunk))
        except httpx.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            raise Unreachable(0, "unreachable", f"download from {self.url} failed: {exc}") from exc
        os.replace(tmp, target)
        return size

    def import_car(self, source: Path, progress: Callable[[int], object]) -> ImportOut:
        """Upload a snapshot CAR; the node verifies every block before storing anything."""

        def chunks() -> Iterator[bytes]:
            with source.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    progress(len(chunk))
                    yield chunk

        try:
            response = self._http.post(
                "/v1/snapshots/import", content=chunks(), headers={"content-type": CAR}
            )
        except httpx.HTTPError as exc:
            raise Unreachable(0, "unreachable", f"cannot reach node at {self.url}: {exc}") from exc
        result: ImportOut = _parse(response, _Call("POST", "", ImportOut))
        return result


class AsyncNodeClient:
    """The same methods as ``NodeClient``, awaitable."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=timeout, transport=transport, headers=_headers(api_key)
        )

    async def __aenter__(self) -> AsyncNodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, call: _Call[M]) -> Any:
        try:
            response = await self._http.request(call.method, call.path, **_request(call))
        except httpx.HTTPError as exc:
            raise Unreachable(0, "unreachable", f"cannot reach node at {self.url}: {exc}") from exc
        return _parse(response, call)

    async def add(
        self,
        text: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        contributor: str | None = None,
        signature: str | None = None,
        supersedes: str | None = None,
        collection: str | None = None,
    ) -> FactCreated:
        body = _fact_body(text, metadata, contributor, signature, supersedes, collection)
        result: FactCreated = await self._run(_Call("POST", "/v1/facts", FactCreated, body))
        return result

    async def add_batch(self, facts: Sequence[Mapping[str, Any]]) -> BatchOut:
        call = _Call("POST", "/v1/facts/batch", BatchOut, {"facts": [dict(f) for f in facts]})
        result: BatchOut = await self._run(call)
        return result

    async def get(self, cid: str) -> FactOut:
        result: FactOut = await self._run(_Call("GET", f"/v1/facts/{cid}", FactOut))
        return result

    async def revoke(
        self,
        cid: str,
        *,
        key: SigningKey | None = None,
        contributor: str | None = None,
        signature: str | None = None,
        reason: str | None = None,
    ) -> RevokeOut:
        """As ``NodeClient.revoke``."""
        result: RevokeOut = await self._run(_revoke_call(cid, key, contributor, signature, reason))
        return result

    async def provenance(self, cid: str) -> ProvenanceOut:
        call = _Call("GET", f"/v1/facts/{cid}/provenance", ProvenanceOut)
        result: ProvenanceOut = await self._run(call)
        return result

    async def attest(
        self,
        cid: str,
        verdict: str,
        *,
        key: SigningKey | None = None,
        at: int | None = None,
        contributor: str | None = None,
        signature: str | None = None,
    ) -> AttestOut:
        """As ``NodeClient.attest``."""
        result: AttestOut = await self._run(
            _attest_call(cid, verdict, key, at, contributor, signature)
        )
        return result

    async def contributor(self, address: str) -> ContributorOut:
        """As ``NodeClient.contributor``."""
        result: ContributorOut = await self._run(_contributor_call(address))
        return result

    async def query(self, query: str, **options: Unpack[QueryOptions]) -> QueryOut:
        """Ranked facts for ``query``; ``options`` are ``QueryIn``'s fields (k, mode, filter,
        min_score, vector, model_cid, include_superseded, min_relevance, proofs)."""
        call = _Call("POST", "/v1/query", QueryOut, _query_body(query, options))
        result: QueryOut = await self._run(call)
        return result

    async def status(self) -> StatusOut:
        result: StatusOut = await self._run(_Call("GET", "/v1/status", StatusOut))
        return result

    async def hide(self, cid: str, reason: str | None = None) -> HideOut:
        body = {"cid": cid} | ({"reason": reason} if reason is not None else {})
        result: HideOut = await self._run(_Call("POST", "/v1/moderation/hidden", HideOut, body))
        return result

    async def unhide(self, cid: str) -> HideOut:
        call = _Call("DELETE", f"/v1/moderation/hidden/{cid}", HideOut)
        result: HideOut = await self._run(call)
        return result

    async def hidden(self, limit: int = 1000) -> HiddenList:
        call = _Call("GET", "/v1/moderation/hidden", HiddenList, params={"limit": str(limit)})
        result: HiddenList = await self._run(call)
        return result

    async def health(self) -> Health:
        result: Health = await self._run(_Call("GET", "/healthz", Health))
        return result

    async def peers(self) -> PeersOut:
        result: PeersOut = await self._run(_Call("GET", "/v1/peers", PeersOut))
        return result

    async def connect_peer(self, address: str) -> PeerConnected:
        call = _Call("POST", "/v1/peers", PeerConnected, {"address": address})
        result: PeerConnected = await self._run(call)
        return result

    async def disconnect_peer(self, peer_id: str, block_seconds: float = 600.0) -> None:
        params = {"block_seconds": str(block_seconds)}
        await self._run(_Call("DELETE", f"/v1/peers/{peer_id}", None, params=params))

    async def metrics(self) -> str:
        data: bytes = await self._run(_Call("GET", "/metrics", None))
        return data.decode()

    async def block(self, cid: str) -> bytes:
        data: bytes = await self._run(_block(cid))
        return data

    async def car(self, cid: str, scope: str = "all") -> bytes:
        data: bytes = await self._run(_car(cid, scope))
        return data

    async def snapshot(self) -> SnapshotOut:
        result: SnapshotOut = await self._run(_Call("POST", "/v1/snapshots", SnapshotOut))
        return result

    async def import_car(self, source: Path) -> ImportOut:
        async def chunks() -> AsyncIterator[bytes]:
            async with await anyio.open_file(source, "rb") as fh:
                while chunk := await fh.read(1 << 20):
                    yield chunk

        try:
            response = await self._http.post(
                "/v1/snapshots/import", content=chunks(), headers={"content-type": CAR}
            )
        except httpx.HTTPError as exc:
            raise Unreachable(0, "unreachable", f"cannot reach node at {self.url}: {exc}") from exc
        result: ImportOut = _parse(response, _Call("POST", "", ImportOut))
        return result
