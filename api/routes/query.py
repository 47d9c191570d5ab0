"""Retrieval for people and LLM agents."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import NodeDep
from api.json_body import JsonRoute
from api.schemas import ErrorBody, LeanQueryOut, QueryIn, QueryOut
from api.views import lean_query_out, query_from, query_out

router = APIRouter(route_class=JsonRoute, prefix="/v1", tags=["query"])


@router.post(
    "/query",
    response_model=QueryOut | LeanQueryOut,
    responses={400: {"model": ErrorBody}, 413: {"model": ErrorBody}, 415: {"model": ErrorBody}},
)
async def query(body: QueryIn, node: NodeDep) -> Response:
    """Ranked facts and a cited context block (only relevant facts: see `min_relevance`);
    `include` asks for a lean answer. ``Server-Timing`` splits embed and search time."""
    result = await node.query(query_from(body))
    if body.include is not None:
        content = lean_query_out(result, body.include)
    else:
        # Serialized by pydantic-core directly (the hot path skips a second validation pass).
        content = query_out(result).model_dump_json().encode()
    return Response(
        content,
        media_type="application/json",
        headers={
            "Server-Timing": f"embed;dur={result.embed_ms:.3f}, search;dur={result.search_ms:.3f}"
        },
    )
