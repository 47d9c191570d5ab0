"""Write docs/vectors/reputation.json: test vectors for reputation (node/reputation.py).

    .venv/bin/python scripts/make_reputation_vectors.py [--check]

Small attestation graphs over fixed keys (private keys 1, 2, 3, ...: public test keys, never
use them for anything real) and real fact CIDs, with the trust, reputation and fact weights
the code computes for them. ``--check`` fails when the committed file differs from what the
code produces now (a unit test runs it), so the document and the implementation cannot drift
apart. Floats are rounded to 12 digits; the scores are computed to a tight tolerance (the
file's ``parameters``), so any correct implementation matches them within 1e-9.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _vectors import write_or_check  # noqa: E402

from node.facts import make_fact  # noqa: E402
from node.reputation import (  # noqa: E402
    ALPHA,
    DISPUTE,
    ENDORSE,
    REFERENCE_SHARE,
    UNTRUSTED_WEIGHT,
    AttestationGraph,
    Reputation,
    fact_weight,
)
from node.signing import SigningKey  # noqa: E402

OUT = ROOT / "docs" / "vectors" / "reputation.json"
DIGITS = 12
#: Tighter than the defaults, so the vectors are the fixed point, not one solver's last step.
TOLERANCE = 1e-13
MAX_ITERATIONS = 1000

NAMES = ["root", "root2", "alice", "bob", "carol", "dave"] + [f"sybil{i}" for i in range(1, 6)]
KEYS = {name: SigningKey((i + 1).to_bytes(32, "big")) for i, name in enumerate(NAMES)}
ADDRESS = {name: key.address for name, key in KEYS.items()}


def fact(author: str, number: int = 1) -> str:
    """The CID of ``author``'s fact number ``number`` (a real fact record)."""
    return make_fact(f"Fact {number} by {author}.", None, ADDRESS[author]).cid


def attest(attester: str, author: str, number: int, verdict: str) -> list[str]:
    return [ADDRESS[attester], fact(author, number), ADDRESS[author], verdict]


def _chain() -> dict[str, Any]:
    return {
        "name": "chain",
        "about": "root endorses a fact of alice, alice one of bob; bob endorses his own fact "
        "(recorded, no edge). Trust flows root -> alice -> bob and back to root.",
        "roots": ["root"],
        "attestations": [
            attest("root", "alice", 1, ENDORSE),
            attest("alice", "bob", 1, ENDORSE),
            attest("bob", "bob", 1, ENDORSE),
        ],
    }


def _dispute() -> dict[str, Any]:
    return {
        "name": "dispute",
        "about": "root endorses two facts of alice and two of bob but disputes a third of "
        "bob's: s(root, alice) = 2, s(root, bob) = 1, so bob gets half of alice's trust. root "
        "disputes carol's only fact: s(root, carol) = -1, no edge, carol has no trust.",
        "roots": ["root"],
        "attestations": [
            attest("root", "alice", 1, ENDORSE),
            attest("root", "alice", 2, ENDORSE),
            attest("root", "bob", 1, ENDORSE),
            attest("root", "bob", 2, ENDORSE),
            attest("root", "bob", 3, DISPUTE),
            attest("root", "carol", 1, DISPUTE),
        ],
    }


def _sybil() -> dict[str, Any]:
    sybils = [f"sybil{i}" for i in range(1, 6)]
    attestations = [attest("root", "alice", 1, ENDORSE)]
    for attester in sybils:
        attestations += [attest(attester, s, 1, ENDORSE) for s in sybils if s != attester]
        attestations.append(attest(attester, "alice", 1, ENDORSE))
    return {
        "name": "sybil_clique",
        "about": "five keys endorse each other's facts and alice's; no reached key endorses "
        "any of them, so all five have trust 0 and their facts weigh the floor. Their "
        "endorsements of alice change nothing.",
        "roots": ["root"],
        "attestations": attestations,
    }


def _two_roots() -> dict[str, Any]:
    return {
        "name": "two_roots",
        "about": "root endorses alice; root2 endorses alice and bob; bob endorses carol; "
        "alice disputes dave. Teleport mass is split evenly between the two roots.",
        "roots": ["root", "root2"],
        "attestations": [
            attest("root", "alice", 1, ENDORSE),
            attest("root2", "alice", 1, ENDORSE),
            attest("root2", "bob", 1, ENDORSE),
            attest("bob", "carol", 1, ENDORSE),
            attest("alice", "dave", 1, DISPUTE),
        ],
    }


def _replaced() -> dict[str, Any]:
    return {
        "name": "replaced",
        "about": "root endorses alice's fact, then disputes the same fact: only the dispute "
        "counts, alice has no trust. root disputes bob's fact, then endorses it: bob is "
        "trusted. The attestations are applied in order (the later one is the current one).",
        "roots": ["root"],
        "attestations": [
            attest("root", "alice", 1, ENDORSE),
            attest("root", "bob", 1, DISPUTE),
            attest("root", "alice", 1, DISPUTE),
            attest("root", "bob", 1, ENDORSE),
        ],
    }


def _partial() -> dict[str, Any]:
    return {
        "name": "partial",
        "about": "root endorses eight facts of alice and one of bob, so bob gets 1/9 of "
        "root's out-trust and ends below half the median trust: a reputation between 0 and 1. "
        "alice endorses carol and two facts of dave, carol endorses dave; bob disputes dave's "
        "second fact, which lowers its weight by bob's reputation.",
        "roots": ["root"],
        "attestations": [
            *(attest("root", "alice", i, ENDORSE) for i in range(1, 9)),
            attest("root", "bob", 1, ENDORSE),
            attest("alice", "carol", 1, ENDORSE),
            attest("alice", "dave", 1, ENDORSE),
            attest("carol", "dave", 1, ENDORSE),
            attest("bob", "dave", 2, DISPUTE),
            attest("alice", "dave", 2, ENDORSE),
        ],
    }


def _case(spec: dict[str, Any]) -> dict[str, Any]:
    graph = AttestationGraph()
    for attester, cid, contributor, verdict in spec["attestations"]:
        graph.set(attester, cid, contributor, verdict)
    roots = [ADDRESS[name] for name in spec["roots"]]
    reputation = Reputation.compute(
        graph, roots, tolerance=TOLERANCE, max_iterations=MAX_ITERATIONS
    )
    addresses = sorted(
        set(roots) | {a[0] for a in spec["attestations"]} | {a[2] for a in spec["attestations"]}
    )
    facts = list(dict.fromkeys((a[1], a[2]) for a in spec["attestations"]))
    weights = []
    for cid, contributor in facts:
        endorsers, disputers = graph.fact_attesters(cid)
        weight = fact_weight(reputation, contributor, endorsers, disputers)
        weights.append(
            {
                "fact": cid,
                "contributor": contributor,
                "endorsers": list(endorsers),
                "disputers": list(disputers),
                "weight": round(weight, DIGITS),
            }
        )
    return {
        **spec,
        "roots": roots,
        "trust": {a: round(v, DIGITS) for a, v in sorted(reputation.trust.items())},
        "reference": round(reputation.reference, DIGITS),
        "reputation": {a: round(reputation.of(a), DIGITS) for a in addresses},
        "fact_weights": weights,
    }


def vectors() -> dict[str, object]:
    return {
        "about": "Reputation test vectors (node/reputation.py, docs/protocol.md). Apply each "
        "case's attestations [attester, fact CID, contributor, verdict] in order (a later one "
        "by the same attester on the same fact replaces the earlier), compute trust from the "
        "roots, and compare trust, reference, reputation (Reputation.of) and fact weights "
        "within 1e-9. An address missing from trust has trust exactly 0.",
        "parameters": {
            "alpha": ALPHA,
            "reference_share": REFERENCE_SHARE,
            "untrusted_weight": UNTRUSTED_WEIGHT,
            "tolerance": TOLERANCE,
            "max_iterations": MAX_ITERATIONS,
            "digits": DIGITS,
        },
        "keys": {
            name: {"private_key": "0x" + key.private_key.hex(), "address": key.address}
            for name, key in KEYS.items()
        },
        "cases": [
            _case(c)
            for c in (_chain(), _dispute(), _sybil(), _two_roots(), _replaced(), _partial())
        ],
    }


def main() -> int:
    return write_or_check(OUT, vectors, "make_reputation_vectors.py")


if __name__ == "__main__":
    raise SystemExit(main())
