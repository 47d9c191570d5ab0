"""A small synchronous HTTP client for a knowhub node (used by the CLI)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8700"


class NodeError(Exception):
    """The node answered with an error body, or could not be reached."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message


class NodeClient:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
        api_key: str | None = None,
    ) -> None:
        """``api_key`` defaults to ``$KNOWHUB_API_KEY`` (sent as a Bearer token)."""
        key = api_key if api_key is not None else os.environ.get("KNOWHUB_API_KEY")
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/"), timeout=timeout, transport=transport, headers=headers
        )
        self.url = url

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise NodeError(0, "unreachable", f"cannot reach node at {self.url}: {exc}") from exc
        return self._check(response)

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                err = response.json()["error"]
                code, message = str(err["code"]), str(err["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", response.text[:500]
            raise NodeError(response.status_code, code, message)
        return response.json()

    def add(
        self,
        text: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        contributor: str | None = None,
        signature: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"text": text}
        if metadata:
            body["metadata"] = dict(metadata)
        if contributor is not None:
            body["contributor"] = contributor
        if signature is not None:
            body["signature"] = signature
        result: dict[str, Any] = self._call("POST", "/v1/facts", body)
        return result

    def add_batch(self, facts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/facts/batch", {"facts": list(facts)})
        return result

    def provenance(self, cid: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/facts/{cid}/provenance")
        return result

    def get(self, cid: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/facts/{cid}")
        return result

    def query(
        self,
        query: str,
        *,
        k: int = 5,
        mode: str = "hybrid",
        filter: Mapping[str, Any] | None = None,
        min_score: float | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"query": query, "k": k, "mode": mode}
        if filter:
            body["filter"] = dict(filter)
        if min_score is not None:
            body["min_score"] = min_score
        result: dict[str, Any] = self._call("POST", "/v1/query", body)
        return result

    def snapshot(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/snapshots")
        return result

    def download(self, path: str, target: Path, progress: Callable[[int], object]) -> int:
        """Stream ``path`` (e.g. a CAR URL) into ``target`` atomically; return bytes written."""
        tmp = target.with_name(target.name + ".part")
        size = 0
        try:
            with self._http.stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    raise NodeError(response.status_code, "download_failed", response.text[:300])
                with tmp.open("wb") as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
                        size += len(chunk)
                        progress(len(chunk))
        except httpx.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            raise NodeError(0, "unreachable", f"download from {self.url} failed: {exc}") from exc
        os.replace(tmp, target)
        return size

    def import_car(self, source: Path, progress: Callable[[int], object]) -> dict[str, Any]:
        def chunks() -> Iterator[bytes]:
            with source.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    progress(len(chunk))
                    yield chunk

        try:
            response = self._http.post(
                "/v1/snapshots/import",
                content=chunks(),
                headers={"content-type": "application/vnd.ipld.car"},
            )
        except httpx.HTTPError as exc:
            raise NodeError(0, "unreachable", f"cannot reach node at {self.url}: {exc}") from exc
        result: dict[str, Any] = self._check(response)
        return result

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/status")
        return result
