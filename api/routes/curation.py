"""Curation: endorse or dispute facts, and see what this node thinks of a contributor
(``node.curation``)."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from api.curation_schemas import (
    AttestationOut,
    AttestationRecord,
    AttestIn,
    AttestOut,
    ContributorOut,
    Verdict,
)
from api.deps import NodeDep
from api.json_body import JsonRoute
from api.schemas import ErrorBody
from api.security import has_api_key
from api.views import attest_out, contributor_out
from node.attestation import MAX_AT
from node.cid import canonical_cid_string
from node.signing import ADDRESS_PATTERN

router = APIRouter(route_class=JsonRoute, prefix="/v1", tags=["curation"])

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "Invalid input; the body says what is wrong."},
    401: {"model": ErrorBody, "description": "Signature missing, or not by the attester."},
    404: {"model": ErrorBody, "description": "No such fact here."},
}


@router.post(
    "/facts/{cid}/attestations",
    status_code=status.HTTP_201_CREATED,
    response_model=AttestOut,
    responses={200: {"model": AttestOut, "description": "Already stored."}, **_ERRORS},
)
async def attest(
    cid: str, body: AttestIn, node: NodeDep, request: Request, response: Response
) -> AttestOut:
    """Endorse or dispute a fact: store the attester's signed attestation and send it to every
    peer; it is anchored like a fact. One attestation per attester and fact counts: the one
    with the latest `at`. Without a signature, a request carrying a valid API key attests with
    the operator key."""
    as_operator = has_api_key(request.scope)
    made, result = await node.attester.attest(
        canonical_cid_string(cid),
        body.verdict,
        contributor=body.contributor,
        signature=body.signature,
        at=body.at,
        as_operator=as_operator,
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return attest_out(made, result)


@router.get("/facts/{cid}/attestation", response_model=AttestationOut, responses=_ERRORS)
async def attestation(
    cid: str,
    verdict: Verdict,
    contributor: Annotated[str, Query(pattern=ADDRESS_PATTERN)],
    at: Annotated[int, Query(ge=0, le=MAX_AT)],
    node: NodeDep,
) -> AttestationOut:
    """The attestation to sign: its CID (sign this string, EIP-191) and its bytes (hash them
    to check the CID without trusting the node)."""
    made = await run_in_threadpool(
        node.attester.attestation_for, canonical_cid_string(cid), verdict, contributor, at
    )
    return AttestationOut(
        cid=made.cid,
        record=AttestationRecord.model_validate(made.record()),
        block=base64.b64encode(made.block).decode(),
    )


@router.get(
    "/contributors/{address}", response_model=ContributorOut, responses={400: {"model": ErrorBody}}
)
async def contributor(
    address: Annotated[str, Path(pattern=ADDRESS_PATTERN)], node: NodeDep
) -> ContributorOut:
    """This node's view of a contributor: reputation (personalised to its trust roots), facts
    held here, endorsements and disputes received and given."""
    return contributor_out(await run_in_threadpool(node.curation.contributor, address))
