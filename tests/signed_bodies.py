"""REST bodies signed by a contributor's key, as a client builds them (tests only): a fact for
``POST /v1/facts`` and an attestation for ``POST /v1/facts/{cid}/attestations``."""

from __future__ import annotations

from typing import Any

from node.attestation import make_attestation
from node.facts import make_fact
from node.signing import SigningKey


def signed_fact(
    key: SigningKey, text: str, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    fact = make_fact(text, metadata or {}, key.address)
    body: dict[str, Any] = {"text": text, "contributor": key.address}
    if metadata:
        body["metadata"] = metadata
    body["signature"] = key.sign_cid(fact.cid)
    return body


def signed_attestation(
    key: SigningKey, cid: str, verdict: str, at: int
) -> tuple[dict[str, Any], str]:
    """The body and the attestation's CID."""
    made = make_attestation(cid, verdict, key.address, at)
    body = {"verdict": verdict, "contributor": key.address, "at": at}
    return {**body, "signature": key.sign_cid(made.cid)}, made.cid
