"""Retrieval for people and LLM agents."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import NodeDep
from api.schemas import ErrorBody, QueryIn, QueryOut
from api.views import query_out
from node.filters import parse_filter
from node.search import Query

router = APIRouter(prefix="/v1", tags=["query"])


@router.post(
    "/query",
    response_model=QueryOut,
    responses={400: {"model": ErrorBody}, 413: {"model": ErrorBody}, 415: {"model": ErrorBody}},
)
async def query(body: QueryIn, node: NodeDep) -> Response:
    """Ranked facts and a cited context block. ``Server-Timing`` splits embed and search time."""
    result = await node.query(
        Query(
            text=body.query,
            k=body.k,
            mode=body.mode,
            filter=parse_filter(body.filter),
            min_score=body.min_score,
            vector=None if body.vector is None else tuple(body.vector),
            include_superseded=body.include_superseded,
        )
    )
    out = query_out(result)
    # Serialized by pydantic-core directly (the hot path skips a second validation pass).
    return Response(
        out.model_dump_json(),
        media_type="application/json",
        headers={
            "Server-Timing": f"embed;dur={result.embed_ms:.3f}, search;dur={result.search_ms:.3f}"
        },
    )
