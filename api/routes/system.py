"""Health and status."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import NodeDep
from api.schemas import (
    ChainStatusOut,
    Health,
    IndexStatus,
    IpfsStatus,
    ModelStatus,
    StatusOut,
)

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health)
async def healthz(node: NodeDep) -> Health:
    """200 once the node has started (model loaded, index reconciled)."""
    return Health(status="ok")


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
    )
