"""Operator moderation: hide facts on this node (``node.moderation``). Operator only: every
route needs a valid API key, and a node without configured keys has no operator to ask."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from api.deps import NodeDep
from api.json_body import JsonRoute
from api.schemas import ErrorBody, HiddenList, HiddenOut, HideIn, HideOut
from api.security import has_api_key
from node.cid import canonical_cid_string
from node.errors import Unauthorized


async def operator_only(request: Request) -> None:
    # async: a plain def dependency would cost a thread hop per request (api.deps)
    if not has_api_key(request.scope):
        raise Unauthorized(
            "moderation is for the node's operator: send an API key (this node needs "
            "KNOWHUB_API_KEYS configured for that)"
        )


router = APIRouter(
    route_class=JsonRoute,
    prefix="/v1/moderation",
    tags=["moderation"],
    dependencies=[Depends(operator_only)],
    responses={401: {"model": ErrorBody, "description": "No valid API key."}},
)


@router.get("/hidden", response_model=HiddenList)
async def hidden(node: NodeDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> HiddenList:
    """The facts this node hides, newest first."""
    found = await run_in_threadpool(node.moderation.hidden, limit)
    items = [HiddenOut(cid=h.cid, reason=h.reason, hidden_at=h.hidden_at) for h in found]
    return HiddenList(hidden=items, count=await run_in_threadpool(node.moderation.count))


@router.post("/hidden", response_model=HideOut, responses={404: {"model": ErrorBody}})
async def hide(body: HideIn, node: NodeDep) -> HideOut:
    """Hide a fact here: not served (451), searched or forwarded by this node; nothing is
    signed or sent to peers."""
    cid = canonical_cid_string(body.cid)
    done = await node.moderation.hide(cid, body.reason)
    return HideOut(cid=cid, status="hidden" if done else "already_hidden")


@router.delete("/hidden/{cid}", response_model=HideOut, responses={404: {"model": ErrorBody}})
async def unhide(cid: str, node: NodeDep) -> HideOut:
    """Serve a hidden fact again."""
    canonical = canonical_cid_string(cid)
    done = await node.moderation.unhide(canonical)
    return HideOut(cid=canonical, status="unhidden" if done else "not_hidden")
