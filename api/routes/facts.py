"""Contribute facts and read them back."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request, Response, status

from api.deps import NodeDep
from api.errors import error_dict
from api.json_body import JsonRoute
from api.schemas import (
    BatchIn,
    BatchItem,
    BatchOut,
    ErrorBody,
    ErrorDetail,
    FactCreated,
    FactIn,
    FactOut,
    ProvenanceOut,
    RevokeIn,
    RevokeOut,
    TombstoneOut,
    TombstoneRecord,
)
from api.security import has_api_key
from api.views import fact_out, provenance_out, revoke_out
from node.errors import KnowhubError

router = APIRouter(route_class=JsonRoute, prefix="/v1/facts", tags=["facts"])

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "Invalid input; the body says what is wrong."},
    401: {"model": ErrorBody, "description": "Signature missing, or not by the contributor."},
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
    fact = node.accept(body.model_dump(exclude_none=True))
    result = await node.contribute(fact)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return FactCreated(cid=result.cid, status="created" if result.created else "exists")


@router.post("/batch", response_model=BatchOut, responses=_ERRORS)
async def contribute_batch(body: BatchIn, node: NodeDep) -> BatchOut:
    """Store up to 1,000 facts; each item succeeds or fails on its own, results in order."""
    outcomes = await node.contribute_many(await node.accept_many(body.facts))
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
    return fact_out(await node.get_fact(cid))


@router.get(
    "/{cid}/provenance",
    response_model=ProvenanceOut,
    responses={404: {"model": ErrorBody}, 400: {"model": ErrorBody}},
)
async def provenance(cid: str, node: NodeDep) -> ProvenanceOut:
    """Who contributed the fact and where it is anchored: a bundle `knowhub verify` checks
    against the chain without trusting this node."""
    return provenance_out(await node.provenance(cid))


@router.delete(
    "/{cid}",
    response_model=RevokeOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": RevokeOut, "description": "Already revoked: the existing tombstone."},
        403: {"model": ErrorBody, "description": "The signer is not the fact's contributor."},
        404: {"model": ErrorBody},
        **_ERRORS,
    },
)
async def revoke(
    cid: str, node: NodeDep, request: Request, response: Response, body: RevokeIn | None = None
) -> RevokeOut:
    """Revoke a fact: store its contributor's signed tombstone, erase the fact here (index,
    keyword index, catalog text, blocks) and send the tombstone to every peer, which erase it
    too; it is anchored like a fact. Without a signature, a request carrying a valid API key
    revokes with the operator key a fact the node signed."""
    given = body or RevokeIn()
    as_operator = has_api_key(request.scope)
    result = await node.revoke(
        cid,
        contributor=given.contributor,
        signature=given.signature,
        reason=given.reason,
        as_operator=as_operator,
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return revoke_out(cid, result)


@router.get(
    "/{cid}/tombstone",
    response_model=TombstoneOut,
    responses={404: {"model": ErrorBody}, 400: {"model": ErrorBody}, 410: {"model": ErrorBody}},
)
async def tombstone(
    cid: str, node: NodeDep, contributor: str | None = None, reason: str | None = None
) -> TombstoneOut:
    """The tombstone that revokes this fact, for its contributor to sign: its CID (sign this
    string, EIP-191) and its bytes (hash them to check the CID without trusting the node)."""
    made = await node.tombstone_for(cid, contributor, reason)
    return TombstoneOut(
        cid=made.cid,
        record=TombstoneRecord.model_validate(made.record()),
        block=base64.b64encode(made.block).decode(),
    )
