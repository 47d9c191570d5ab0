"""Health and status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from api.deps import NodeDep
from api.json_body import JsonRoute
from api.metrics import CONTENT_TYPE, Metrics
from api.schemas import (
    DirectoryEntryOut,
    Health,
    PeerConnected,
    PeerConnectIn,
    PeerOut,
    PeersOut,
    Ready,
    StatusOut,
)
from api.views import status_out

router = APIRouter(route_class=JsonRoute, tags=["system"])


@router.get("/healthz", response_model=Health)
async def healthz(node: NodeDep) -> Health:
    """200 once the node has started (model loaded, index reconciled)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "Not ready: the reasons say why."}},
)
async def readyz(node: NodeDep, response: Response) -> Ready:
    """Readiness (for load balancers): 503 while writes fail, the ingest queue is full, the
    network layer is down, or no peer is connected although bootstrap peers are configured;
    ``/healthz`` stays liveness (the process serves requests)."""
    reasons = (await node.status()).not_ready()
    if reasons:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        response.headers["Retry-After"] = "5"
        return Ready(status="not_ready", reasons=reasons)
    return Ready(status="ready", reasons=[])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
)
async def metrics(node: NodeDep, request: Request) -> Response:
    """Prometheus metrics: facts stored, ingest and query latency histograms, HTTP requests,
    peers, gossip accepted / rejected, anchor queue depth, last anchored block."""
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(await node.status()), media_type=CONTENT_TYPE)


@router.get("/v1/status", response_model=StatusOut)
async def node_status(node: NodeDep) -> StatusOut:
    return status_out(await node.status())


@router.get("/v1/peers", response_model=PeersOut)
async def peers(node: NodeDep) -> PeersOut:
    """Peers this node is connected to or has heard from: addresses, connected since, facts
    received from each, messages rejected; and the peer directory (who holds which
    collections, with which model)."""
    return PeersOut(
        peers=[PeerOut.model_validate(p, from_attributes=True) for p in node.peers()],
        directory=[
            DirectoryEntryOut.model_validate(e, from_attributes=True) for e in node.directory()
        ],
    )


@router.post("/v1/peers", response_model=PeerConnected)
async def connect_peer(body: PeerConnectIn, node: NodeDep) -> PeerConnected:
    """Dial a peer now (and lift a block on it); a catch-up sync follows the connection."""
    return PeerConnected(peer_id=await node.connect_peer(body.address))


@router.delete("/v1/peers/{peer_id}", status_code=status.HTTP_204_NO_CONTENT)
async def disconnect_peer(
    peer_id: str,
    node: NodeDep,
    block_seconds: Annotated[
        float, Query(ge=0, le=86_400, description="Refuse the peer this long.")
    ] = 600.0,
) -> Response:
    """Hang up on a peer and refuse its connections and gossip for ``block_seconds``."""
    await node.disconnect_peer(peer_id, block_seconds)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
