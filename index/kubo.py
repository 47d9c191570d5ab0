"""Content store on a Kubo daemon, through its HTTP RPC (``/api/v0``) with httpx.

ipfshttpclient is not used: it refuses every Kubo since 0.8 (VersionMismatch). Every call passes
its CID parameters explicitly (CIDv1, sha2-256, base32) and every block read back is hashed and
checked here, so a misbehaving daemon cannot feed the node a wrong block. Daemon errors (HTTP 500
with ``{"Message", "Code", "Type"}``) and connection failures map to the node's error types.

Kubo calls used: ``dag/put`` (store-codec/input-codec dag-cbor), ``block/put`` (cid-codec raw),
``block/get``, ``block/stat``, ``pin/add``, ``dag/import``, ``dag/export``. Reads pass
``offline=true`` (Kubo answers "not found" at once for a block it lacks, where an online node
would search the network) and a daemon-side ``timeout`` (js-ipfs ignores ``offline``): a read
that the daemon times out is reported as not found.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

import httpx
from multiformats import CID

from node.cid import DAG_CBOR, RAW, parse_cid, verify_block
from node.errors import InvalidInput, NotFound, StorageError, Unavailable

log = logging.getLogger(__name__)


def api_base_url(api: str) -> str:
    """``/ip4/127.0.0.1/tcp/5001`` or ``http://host:5001`` -> ``http://host:5001/api/v0``."""
    if api.startswith("/"):
        parts = api.strip("/").split("/")
        if (
            len(parts) < 4
            or parts[0] not in {"ip4", "ip6", "dns", "dns4", "dns6"}
            or parts[2] != "tcp"
        ):
            raise ValueError(f"unsupported IPFS API multiaddr {api!r} (want /ip4/H/tcp/P)")
        host = f"[{parts[1]}]" if parts[0] == "ip6" else parts[1]
        scheme = "https" if "https" in parts[4:] or "tls" in parts[4:] else "http"
        return f"{scheme}://{host}:{parts[3]}/api/v0"
    split = urlsplit(api)
    if split.scheme not in {"http", "https"} or not split.netloc:
        raise ValueError(f"unsupported IPFS API address {api!r}")
    path = split.path.rstrip("/")
    return f"{split.scheme}://{split.netloc}{path if path.endswith('/api/v0') else '/api/v0'}"


class KuboContentStore:
    def __init__(
        self,
        api: str,
        *,
        timeout: float = 30.0,
        read_timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = api_base_url(api)
        self._read_params = {"offline": "true", "timeout": f"{read_timeout:g}s"}
        self._http = httpx.AsyncClient(base_url=self._base, timeout=timeout, transport=transport)

    @property
    def kind(self) -> str:
        return "kubo"

    async def _rpc(
        self,
        command: str,
        params: dict[str, str],
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.post(f"/{command}", params=params, files=files)
        except httpx.TimeoutException as exc:
            raise Unavailable(f"IPFS daemon at {self._base} timed out on {command}") from exc
        except httpx.HTTPError as exc:
            raise Unavailable(f"IPFS daemon at {self._base} unreachable: {exc}") from exc
        if response.status_code == 200:
            return response
        message = response.text[:500]
        with contextlib.suppress(ValueError, AttributeError):
            message = str(response.json().get("Message", message))
        lowered = message.lower()
        if any(m in lowered for m in ("not found", "deadline exceeded", "timed out", "aborted")):
            raise NotFound(f"IPFS daemon: {message}")
        raise StorageError(f"IPFS daemon {command} failed ({response.status_code}): {message}")

    async def put(self, cid: str, data: bytes) -> None:
        parsed = parse_cid(cid)
        if not verify_block(parsed, data):
            raise InvalidInput(f"block does not match its CID {cid}")
        await self._store(cid, parsed, data)

    async def _store(self, cid: str, parsed: CID, data: bytes) -> None:
        """Store and pin a block already checked against ``parsed``."""
        codec = parsed.codec.name
        upload = {"file": ("block", data, "application/octet-stream")}
        if codec == DAG_CBOR:
            response = await self._rpc(
                "dag/put",
                {
                    "store-codec": DAG_CBOR,
                    "input-codec": DAG_CBOR,
                    "hash": "sha2-256",
                    "pin": "true",
                    "cid-base": "base32",
                },
                upload,
            )
            stored = response.json()["Cid"]["/"]
        elif codec == RAW:
            response = await self._rpc(
                "block/put",
                {
                    "cid-codec": RAW,
                    "mhtype": "sha2-256",
                    "mhlen": "32",
                    "pin": "true",
                    "cid-base": "base32",
                },
                upload,
            )
            stored = response.json()["Key"]
        else:
            raise InvalidInput(f"the node stores only dag-cbor and raw blocks, not {codec}")
        if parse_cid(stored) != parsed:
            raise StorageError(f"IPFS daemon stored {cid} as {stored}: codec or hash mismatch")

    async def get(self, cid: str) -> bytes:
        parsed = parse_cid(cid)
        response = await self._rpc("block/get", {"arg": str(parsed), **self._read_params})
        if not verify_block(parsed, response.content):
            raise StorageError(f"IPFS daemon returned a block that does not match {cid}")
        return response.content

    async def has(self, cid: str) -> bool:
        try:
            await self._rpc("block/stat", {"arg": str(parse_cid(cid)), **self._read_params})
        except NotFound:
            return False
        return True

    async def pin(self, cid: str) -> None:
        await self._rpc("pin/add", {"arg": str(parse_cid(cid)), "recursive": "true"})

    async def put_many(self, blocks: Sequence[tuple[str, bytes]]) -> None:
        """One RPC per block (``dag/put``/``block/put`` with ``pin=true`` pins as it stores);
        every block is checked before the first request."""
        checked = []
        for cid, data in blocks:
            parsed = parse_cid(cid)
            if not verify_block(parsed, data):
                raise InvalidInput(f"block does not match its CID {cid}")
            checked.append((cid, parsed, data))
        for cid, parsed, data in checked:
            await self._store(cid, parsed, data)

    async def delete(self, cid: str) -> None:
        """``pin/rm`` then ``block/rm``: Kubo keeps an unpinned block until GC, so it is
        removed at once; neither a missing pin nor a missing block is an error."""
        arg = str(parse_cid(cid))
        for command, params in (
            ("pin/rm", {"arg": arg, "recursive": "true"}),
            ("block/rm", {"arg": arg, "force": "true"}),
        ):
            try:
                await self._rpc(command, params)
            except NotFound:
                pass
            except StorageError as exc:
                if "not pinned" not in exc.message.lower():
                    raise

    async def import_car(self, car: bytes) -> list[str]:
        """``dag/import`` with the roots pinned; returns the root CIDs the daemon reports."""
        response = await self._rpc(
            "dag/import",
            {"pin-roots": "true"},
            {"file": ("snapshot.car", car, "application/vnd.ipld.car")},
        )
        roots = []
        for line in response.text.splitlines():
            if line.strip():
                root = json.loads(line).get("Root")
                if root:
                    roots.append(str(root["Cid"]["/"]))
        return roots

    async def export_car(self, cid: str) -> AsyncIterator[bytes]:
        request = self._http.build_request(
            "POST", "/dag/export", params={"arg": str(parse_cid(cid)), "offline": "true"}
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise Unavailable(f"IPFS daemon at {self._base} unreachable: {exc}") from exc
        try:
            if response.status_code != 200:
                await response.aread()
                raise StorageError(f"IPFS daemon dag/export failed: {response.text[:300]}")
            async for chunk in response.aiter_bytes():
                yield chunk
        finally:
            await response.aclose()

    async def close(self) -> None:
        await self._http.aclose()
