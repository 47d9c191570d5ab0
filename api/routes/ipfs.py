"""IPFS Trustless Gateway (``/ipfs/{cid}``, raw blocks and CARs) and knowledge-base snapshots.

Only verifiable responses are served (https://specs.ipfs.tech/http-gateways/trustless-gateway/):
``format=raw`` / ``Accept: application/vnd.ipld.raw`` for one block, ``format=car`` /
``Accept: application/vnd.ipld.car`` for a CARv1 of the DAG (``dag-scope`` all, entity, block).
A request asking for neither is 400, as the spec asks of a strict trustless gateway. CIDs
must name sha2-256 digests (the node's only hash): any other hash is 400.

Snapshot imports are verified while they arrive (``node.car.CarStream``): the header, then each
block against its CID, refusing the CAR at the first bad section; only verified blocks are
written, to an anonymous file under ``DATA_DIR/tmp`` (``node.content.spool_file``). The upload
as a whole must arrive within ``body_timeout`` seconds plus one second per ``MIN_UPLOAD_RATE``
bytes received (a client trickling bytes is cut off; one sending at a normal rate is not), and
within ``max_car_bytes``. After a refusal the rest of the body is read and dropped (same
bounds, nothing hashed or written) so the client can read the 400.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, BinaryIO

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.deps import NodeDep
from api.errors import error_response
from api.json_body import JsonRoute
from api.options import ApiOptions
from api.schemas import ErrorBody, ImportOut, SnapshotOut
from node.car import CarStream, InvalidCar, car_header, car_section, supported_hash
from node.cid import cid_string, parse_cid
from node.content import DagScope, spool_file
from node.errors import InvalidCid, InvalidInput

log = logging.getLogger(__name__)

router = APIRouter(route_class=JsonRoute, tags=["ipfs"])

RAW = "application/vnd.ipld.raw"
CAR = "application/vnd.ipld.car"
CAR_CONTENT_TYPE = f"{CAR}; version=1; order=dfs; dups=n"
IMMUTABLE = "public, max-age=29030400, immutable"
#: Slowest average rate (bytes/s) a CAR upload may keep up beyond ``body_timeout``.
MIN_UPLOAD_RATE = 256 * 1024


def _negotiate(fmt: str | None, accept: str | None) -> str:
    if fmt is not None:
        if fmt not in {"raw", "car"}:
            raise InvalidInput(f"format must be raw or car (trustless gateway), not {fmt!r}")
        return fmt
    offered = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    if RAW in offered:
        return "raw"
    if CAR in offered:
        return "car"
    raise InvalidInput(
        "this is a trustless gateway: ask for ?format=raw or ?format=car "
        f"(or Accept: {RAW} / {CAR})"
    )


def _car_version(accept: str | None, fmt: str | None) -> None:
    for part in (accept or "").split(","):
        fields = [f.strip() for f in part.split(";")]
        if fields[0].lower() == CAR and fmt is None:
            for param in fields[1:]:
                if param.replace(" ", "") not in {
                    "version=1",
                    "order=dfs",
                    "order=unk",
                    "dups=n",
                    "dups=y",
                    "",
                }:
                    raise InvalidInput(f"unsupported CAR parameter {param!r}: only CARv1")


_GATEWAY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {RAW: {}, CAR: {}}},
    400: {"model": ErrorBody},
    404: {"model": ErrorBody},
}


# one route per method: one api_route with both gave GET and HEAD the same operationId
@router.get("/ipfs/{cid}", responses=_GATEWAY_RESPONSES)
@router.head("/ipfs/{cid}", responses=_GATEWAY_RESPONSES)
async def gateway(
    cid: str,
    request: Request,
    node: NodeDep,
    format: Annotated[str | None, Query(description="raw or car")] = None,
    dag_scope: Annotated[DagScope, Query(alias="dag-scope")] = DagScope.ALL,
    accept: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A verifiable block or CAR by CID. HEAD answers the same headers without a body."""
    kind = _negotiate(format, accept)
    parsed = parse_cid(cid)
    if not supported_hash(parsed):
        raise InvalidCid(
            f"CID {cid[:80]!r} uses the hash {parsed.hashfun.name}: this node stores only "
            "sha2-256 blocks"
        )
    name = cid_string(parsed)
    root = await node.get_block(name)  # 404 before any byte is sent when the root is absent
    etag = f'"{name}.raw"' if kind == "raw" else f'"{name}.car.{dag_scope.value}"'
    headers = {
        "Cache-Control": IMMUTABLE,
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
        "X-Ipfs-Path": f"/ipfs/{name}",
        "X-Ipfs-Roots": name,
        "Vary": "Accept",
        "Content-Disposition": f'attachment; filename="{name}.{"bin" if kind == "raw" else "car"}"',
    }
    if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    if kind == "raw":
        return Response(
            root if request.method == "GET" else b"",
            media_type=RAW,
            headers={**headers, "Content-Length": str(len(root))},
        )
    _car_version(accept, format)
    if request.method == "HEAD":  # the CAR's length is not known without walking the DAG
        head = Response(b"", media_type=CAR_CONTENT_TYPE, headers=headers)
        del head.headers["content-length"]
        return head

    async def stream() -> AsyncIterator[bytes]:
        yield car_header([parsed])
        async for block_cid, data in node.walk(name, dag_scope):
            yield car_section(block_cid, data)

    return StreamingResponse(stream(), media_type=CAR_CONTENT_TYPE, headers=headers)


@router.post("/v1/snapshots", response_model=SnapshotOut, tags=["snapshots"])
async def create_snapshot(node: NodeDep) -> SnapshotOut:
    """Build (and pin) the manifest of every fact; download it as a CAR from ``car_url``."""
    root, count = await node.snapshot()
    name = cid_string(root.cid)
    return SnapshotOut(root=name, facts=count, car_url=f"/ipfs/{name}?format=car")


@router.post(
    "/v1/snapshots/import",
    response_model=ImportOut,
    tags=["snapshots"],
    responses={400: {"model": ErrorBody}, 413: {"model": ErrorBody}, 415: {"model": ErrorBody}},
    openapi_extra={"requestBody": {"content": {CAR: {}}, "required": True}},
)
async def import_snapshot(request: Request, node: NodeDep) -> Response:
    """Import a snapshot CAR: verified while it arrives, then every fact's contributor
    signature is checked; any corrupt, missing, unsigned or invalid block or fact rejects the
    whole file (400 naming it) and nothing from it is stored."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != CAR:
        return error_response(415, "unsupported_media_type", f"send the CAR as {CAR}")
    options: ApiOptions = request.app.state.options
    with spool_file(node.data_dir) as spool:
        refused = await _receive_car(request, options, spool)
        if refused is not None:
            return refused
        spool.seek(0)
        result = await node.import_car(spool)
    body = ImportOut(
        roots=result.roots,
        facts=result.facts,
        created=result.created,
        existing=result.existing,
        refused=result.refused,
    )
    return Response(body.model_dump_json(), media_type="application/json")


async def _receive_car(request: Request, options: ApiOptions, spool: BinaryIO) -> Response | None:
    """Stream the body through a ``CarStream`` into ``spool``; an error response, or None when
    the whole CAR arrived and every block verified."""
    limit = options.max_car_bytes
    parser = CarStream()
    error: InvalidCar | None = None
    size = 0
    start = time.monotonic()
    chunks = request.stream().__aiter__()
    while True:
        # one deadline for the whole upload, growing only with the bytes actually received
        left = start + options.body_timeout + size / MIN_UPLOAD_RATE - time.monotonic()
        with anyio.move_on_after(max(left, 0.0)) as timer:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
        if timer.cancelled_caught:
            return error_response(
                408, "body_timeout", f"CAR upload too slow: {size} bytes received in time"
            )
        size += len(chunk)
        if size > limit:
            return error_response(413, "body_too_large", f"CAR is over the limit of {limit} bytes")
        if error is not None:
            continue  # refused: drain the rest unread so that the client gets the answer
        try:
            await asyncio.to_thread(_spool_verified, parser, spool, chunk)
        except InvalidCar as exc:
            log.info("refusing a snapshot upload after %d bytes: %s", size, exc.message)
            error = exc
    if error is None:
        try:
            parser.close()
        except InvalidCar as exc:
            error = exc
    if error is not None:
        raise error
    return None


def _spool_verified(parser: CarStream, spool: BinaryIO, chunk: bytes) -> None:
    """Hash the blocks ``chunk`` completes and write them (after the header) to ``spool``."""
    blocks = parser.feed(chunk)
    if parser.roots is not None and spool.tell() == 0:
        spool.write(car_header(parser.roots))
    for cid, data in blocks:
        spool.write(car_section(cid, data))
