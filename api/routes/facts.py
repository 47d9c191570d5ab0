"""Contribute facts and read them back."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import NodeDep
from api.errors import error_dict
from api.schemas import (
    BatchIn,
    BatchItem,
    BatchOut,
    ErrorBody,
    ErrorDetail,
    FactCreated,
    FactIn,
    FactOut,
    FactRecord,
)
from node.errors import KnowhubError
from node.facts import Fact
from node.service import parse_submission

router = APIRouter(prefix="/v1/facts", tags=["facts"])

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "Invalid input; the body says what is wrong."},
    413: {"model": ErrorBody, "description": "Body over the size limit."},
    415: {"model": ErrorBody, "description": "Body is not application/json."},
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FactCreated,
    responses={200: {"model": FactCreated, "description": "Already stored."}, **_ERRORS},
)
async def contribute(body: FactIn, node: NodeDep, response: Response) -> FactCreated:
    """Store one fact. Idempotent: the same text and metadata always give the same CID."""
    submission: dict[str, object] = {"text": body.text}
    if body.metadata is not None:
        submission["metadata"] = body.metadata
    fact = parse_submission(submission)
    result = await node.contribute(fact)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return FactCreated(cid=result.cid, status="created" if result.created else "exists")


@router.post("/batch", response_model=BatchOut, responses=_ERRORS)
async def contribute_batch(body: BatchIn, node: NodeDep) -> BatchOut:
    """Store up to 1,000 facts; each item succeeds or fails on its own, results in order."""
    parsed: list[Fact | KnowhubError] = []
    for item in body.facts:
        try:
            parsed.append(parse_submission(item))
        except KnowhubError as exc:
            parsed.append(exc)
    outcomes = await node.contribute_many(parsed)
    items: list[BatchItem] = []
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, KnowhubError):
            items.append(
                BatchItem(
                    index=i, status="error", error=ErrorDetail.model_validate(error_dict(outcome))
                )
            )
        else:
            items.append(
                BatchItem(
                    index=i, cid=outcome.cid, status="created" if outcome.created else "exists"
                )
            )
    return BatchOut(
        results=items,
        created=sum(1 for it in items if it.status == "created"),
        existing=sum(1 for it in items if it.status == "exists"),
        failed=sum(1 for it in items if it.status == "error"),
    )


@router.get(
    "/{cid}",
    response_model=FactOut,
    responses={404: {"model": ErrorBody}, 400: {"model": ErrorBody}},
)
async def get_fact(cid: str, node: NodeDep) -> FactOut:
    """The fact record with this CID (any multibase accepted; answered in base32)."""
    stored = await node.get_fact(cid)
    return FactOut(
        cid=stored.cid,
        record=FactRecord.model_validate(stored.record()),
        status="stored",
        stored_at=stored.stored_at,
    )
