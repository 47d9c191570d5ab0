"""Health and status."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import NodeDep
from api.schemas import Health, IndexStatus, IpfsStatus, ModelStatus, StatusOut

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health)
async def healthz(node: NodeDep) -> Health:
    """200 once the node has started (model loaded, index reconciled)."""
    return Health(status="ok")


@router.get("/v1/status", response_model=StatusOut)
async def node_status(node: NodeDep) -> StatusOut:
    s = node.status()
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
    )
