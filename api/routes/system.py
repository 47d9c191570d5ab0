"""Health and status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from api.deps import NodeDep
from api.metrics import CONTENT_TYPE, Metrics
from api.schemas import (
    ChainStatusOut,
    Health,
    IndexStatus,
    IpfsStatus,
    ModelStatus,
    NetworkStatusOut,
    PeerConnected,
    PeerConnectIn,
    PeerOut,
    PeersOut,
    StatusOut,
)

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health)
async def healthz(node: NodeDep) -> Health:
    """200 once the node has started (model loaded, index reconciled)."""
    return Health(status="ok")


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
    s = await node.status()
    chain = None
    if s.chain is not None:
        chain = ChainStatusOut(
            rpc_url=s.chain.rpc_url,
            chain_id=s.chain.chain_id,
            registry=s.chain.registry,
            account=s.chain.account,
            anchor_queue=s.chain.queued,
            open_batches=s.chain.open_batches,
            last_anchored_block=s.chain.last_anchored_block,
            error=s.chain.error,
            follow_block=s.chain.follow_block,
            verified_batches=s.chain.verified_batches,
            facts_from_chain=s.chain.facts_from_chain,
            follow_error=s.chain.follow_error,
        )
    return StatusOut(
        version=s.version,
        facts=s.facts,
        index=IndexStatus(kind=s.index_kind, size=s.index_size),
        model=ModelStatus(name=s.model, dimension=s.dimension),
        ipfs=IpfsStatus(
            store=s.content_store,
            publication_backlog=s.publication_backlog,
            error=s.content_store_error,
        ),
        data_dir=s.data_dir,
        operator=s.operator,
        require_signatures=s.require_signatures,
        chain=chain,
        p2p=None
        if s.network is None
        else NetworkStatusOut.model_validate(s.network, from_attributes=True),
    )


@router.get("/v1/peers", response_model=PeersOut)
async def peers(node: NodeDep) -> PeersOut:
    """Peers this node is connected to or has heard from: addresses, connected since, facts
    received from each, messages rejected."""
    return PeersOut(peers=[PeerOut.model_validate(p, from_attributes=True) for p in node.peers()])


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
