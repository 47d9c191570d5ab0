"""The wire schemas of curation: attestations (``POST /v1/facts/{cid}/attestations``, the
record to sign) and contributors (``GET /v1/contributors/{address}``); the MCP tool, the
client and the CLI use these too."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from node.attestation import MAX_AT
from node.signing import ADDRESS_PATTERN

Verdict = Literal["endorse", "dispute"]
_ADDRESS: dict[str, Any] = {"pattern": ADDRESS_PATTERN}


class AttestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    contributor: str | None = Field(
        None,
        json_schema_extra=_ADDRESS,
        description="EIP-55 address of the attester (who signs). Omit, with no signature and an "
        "API key, to attest with the node's operator key.",
    )
    at: StrictInt | None = Field(
        None,
        ge=0,
        le=MAX_AT,
        description="The attester's clock, Unix seconds (the record's `at`): required with a "
        "signature, since it is part of what was signed; default now for the operator key.",
    )
    signature: str | None = Field(
        None,
        json_schema_extra={"pattern": "^0x[0-9a-fA-F]{130}$"},
        description="0x hex, 65 bytes: EIP-191 personal_sign by contributor of the "
        "attestation's CID (GET /v1/facts/{cid}/attestation gives the record and CID to sign).",
    )


class AttestationRecord(BaseModel):
    v: int
    kind: Literal["attestation"]
    about: str = Field(description="CID of the fact attested.")
    verdict: Verdict
    contributor: str = Field(description="The attester.")
    at: int


class AttestationOut(BaseModel):
    cid: str = Field(description="The attestation's CID: what the attester signs (EIP-191).")
    record: AttestationRecord
    block: str = Field(description="The record's DAG-CBOR bytes, base64 (hash them: the CID).")


class AttestOut(BaseModel):
    attestation: str = Field(description="CID of the signed attestation (gossiped, anchored).")
    about: str
    verdict: Verdict
    contributor: str
    at: int
    status: Literal["created", "exists"]


class ContributorOut(BaseModel):
    address: str
    reputation: float = Field(
        description="0..1: min(1, trust / reference), personalised to this node's trust roots "
        "(docs/protocol.md, 'Reputation')."
    )
    trust: float = Field(description="The EigenTrust score: the key's share, all sum to 1.")
    trust_root: bool = Field(description="This node trusts the key by configuration.")
    facts: int = Field(description="Facts of this contributor stored here.")
    endorsements: int = Field(description="Current endorsements of its facts received.")
    disputes: int = Field(description="Current disputes of its facts received.")
    endorsements_given: int
    disputes_given: int
