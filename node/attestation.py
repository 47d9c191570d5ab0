"""The attestation record kind: a contributor endorses or disputes somebody's fact.

An attestation is the DAG-CBOR map ``{"v": 1, "kind": "attestation", "about": <fact CID
string>, "verdict": "endorse" | "dispute", "contributor": <EIP-55 address>, "at": <int>}``,
keys exactly these. ``contributor`` is the attester (every record names its signer there),
and it is signed like a fact: EIP-191 ``personal_sign`` of its own CID string. ``about`` is a
CID *string*, not an IPLD link, for the reason tombstones give: walking an attestation's DAG
must not pull the fact along. ``at`` is the attester's clock in Unix seconds (0 - 2**53): one
attester has one attestation per fact, and the one with the greatest ``(at, CID)`` is the
current one on every node whatever order they arrive in (an arrival order would differ from
node to node).

What an attestation does (``node.curation``, ``node.reputation``) is the node's business;
what one *is* lives here. Invariant, as for every kind: only the canonical encoding decodes, so
an attestation's CID names one verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dag_cbor
from eth_utils.address import is_checksum_address

from node.cid import dag_cbor_cid
from node.errors import InvalidFact
from node.facts import check_fact_cid
from node.records import RecordKind
from node.reputation import VERDICTS

ATTESTATION_KIND_NAME = "attestation"
ATTESTATION_VERSION = 1
_KEYS = frozenset({"v", "kind", "about", "verdict", "contributor", "at"})
MAX_ATTESTATION_BLOCK = 512
#: The largest ``at`` (the largest integer every JSON reader keeps exactly).
MAX_AT = 2**53


@dataclass(frozen=True, slots=True)
class Attestation:
    """A validated attestation. Build it with :func:`make_attestation`."""

    about: str
    verdict: str
    contributor: str
    at: int
    block: bytes
    cid: str

    @property
    def kind(self) -> str:
        return ATTESTATION_KIND_NAME

    @property
    def attester(self) -> str:
        return self.contributor

    def record(self) -> dict[str, Any]:
        return {
            "v": ATTESTATION_VERSION,
            "kind": ATTESTATION_KIND_NAME,
            "about": self.about,
            "verdict": self.verdict,
            "contributor": self.contributor,
            "at": self.at,
        }

    def supersedes(self, other: Attestation) -> bool:
        """Whether this attestation replaces ``other`` (same attester and fact, later)."""
        return (self.at, self.cid) > (other.at, other.cid)


def make_attestation(about: Any, verdict: Any, contributor: Any, at: Any) -> Attestation:
    """Validate the parts of an attestation and build its canonical record; ``InvalidFact``
    naming the field otherwise. ``about`` may be any multibase form of a CIDv1 dag-cbor; the
    record holds its base32 string."""
    target = check_fact_cid(about, "about")
    if not isinstance(verdict, str) or verdict not in VERDICTS:
        raise InvalidFact(f"verdict must be one of {', '.join(VERDICTS)}", field="verdict")
    if not isinstance(contributor, str) or not is_checksum_address(contributor):
        raise InvalidFact(
            "contributor must be the attester's checksummed 0x address (EIP-55)",
            field="contributor",
        )
    if type(at) is not int or not 0 <= at <= MAX_AT:
        raise InvalidFact(f"at must be an integer of Unix seconds, 0 to {MAX_AT}", field="at")
    record: dict[str, Any] = {
        "v": ATTESTATION_VERSION,
        "kind": ATTESTATION_KIND_NAME,
        "about": target,
        "verdict": verdict,
        "contributor": contributor,
        "at": at,
    }
    block = dag_cbor.encode(record)
    return Attestation(target, verdict, contributor, at, block, dag_cbor_cid(block))


def attestation_from_map(record: Mapping[str, Any], block: bytes) -> Attestation:
    """An attestation from its decoded map and block (its row of ``node.kinds``)."""
    if set(record) != _KEYS:
        raise InvalidFact(
            "attestation must be a map with exactly v, kind, about, verdict, contributor, at"
        )
    if type(record["v"]) is not int or record["v"] != ATTESTATION_VERSION:
        raise InvalidFact(f"unsupported attestation version {record['v']!r}", field="v")
    attestation = make_attestation(
        record["about"], record["verdict"], record["contributor"], record["at"]
    )
    if attestation.block != block or attestation.about != record["about"]:
        raise InvalidFact("attestation block is not in canonical DAG-CBOR form")
    return attestation


def _subject(attestation: Attestation) -> str:
    return attestation.about


ATTESTATION = RecordKind(
    ATTESTATION_KIND_NAME, attestation_from_map, MAX_ATTESTATION_BLOCK, _subject
)
