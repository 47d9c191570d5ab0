"""The p2p wire format and set reconciliation, checked against docs/vectors/p2p.json."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from typing import Any

import dag_cbor
import pytest

from node.facts import make_fact
from node.records import SignedRecord
from node.signing import SigningKey
from p2p.reconcile import ItemSet, reconcile_locally, respond
from p2p.wire import (
    MAX_ENVELOPE_BYTES,
    MAX_FACTS_PER_ENVELOPE,
    InvalidEnvelope,
    decode_anchor_notice,
    decode_envelope,
    pack_envelopes,
)
from tests.conftest import ROOT

VECTORS = json.loads((ROOT / "docs" / "vectors" / "p2p.json").read_text())


def test_committed_vectors_match_the_code() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/make_protocol_vectors.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_vector_envelope_decodes_to_its_facts() -> None:
    facts = decode_envelope(bytes.fromhex(VECTORS["envelope"]["bytes"]))
    assert [f.cid for f in facts] == VECTORS["envelope"]["facts"]
    for got, want in zip(facts, VECTORS["facts"], strict=True):
        assert got.block.hex() == want["block"]
        assert got.signature == want["signature"]
        assert got.contributor == VECTORS["signer"]["address"]


@pytest.mark.parametrize("case", VECTORS["invalid_envelopes"], ids=lambda c: c["why"])
def test_vector_invalid_envelopes_are_rejected(case: dict[str, str]) -> None:
    with pytest.raises(InvalidEnvelope):
        decode_envelope(bytes.fromhex(case["bytes"]))


def test_envelope_shape_rules() -> None:
    key = SigningKey.generate()
    fact = make_fact("x", None, key.address)
    record: Any = {"block": fact.block, "sig": bytes.fromhex(key.sign_cid(fact.cid)[2:])}
    assert decode_envelope(dag_cbor.encode({"v": 1, "facts": [record]}))
    bad: Any
    for bad in (
        {"v": 2, "facts": [record]},
        {"v": 1, "facts": [record], "extra": 1},
        {"v": 1, "facts": [{**record, "cid": b"x"}]},
        {"v": 1, "facts": [{"block": fact.block, "sig": b"short"}]},
        {"v": 1, "facts": [record] * (MAX_FACTS_PER_ENVELOPE + 1)},
        {"v": True, "facts": [record]},
    ):
        with pytest.raises(InvalidEnvelope):
            decode_envelope(dag_cbor.encode(bad))
    with pytest.raises(InvalidEnvelope, match="over"):
        decode_envelope(b"\x00" * (MAX_ENVELOPE_BYTES + 1))


@pytest.mark.parametrize("version", [1.0, True, 1.5, "1", None, -1, 2**63])
def test_envelope_version_is_the_integer_one(version: Any) -> None:
    """``1.0 == 1`` and ``True == 1`` in Python; on the wire neither is the integer 1."""
    key = SigningKey.generate()
    fact = make_fact("A float is not a version.", None, key.address)
    record: Any = {"block": fact.block, "sig": bytes.fromhex(key.sign_cid(fact.cid)[2:])}
    assert decode_envelope(dag_cbor.encode({"v": 1, "facts": [record]}))
    data = dag_cbor.encode({"v": version, "facts": [record]})
    if isinstance(version, float):
        assert b"\xfb" in data  # a CBOR float64 on the wire  # a CBOR float64 on the wire
    with pytest.raises(InvalidEnvelope, match="version"):
        decode_envelope(data)


@pytest.mark.parametrize(
    "change", [{"v": 1.0}, {"v": True}, {"chain_id": 31337.0}, {"block": 42.0}, {"block": True}]
)
def test_anchor_notice_integers_are_integers(change: dict[str, Any]) -> None:
    good = dag_cbor.decode(bytes.fromhex(VECTORS["anchor_notice"]))
    assert isinstance(good, dict)
    with pytest.raises(InvalidEnvelope):
        decode_anchor_notice(dag_cbor.encode({**good, **change}))


def test_pack_envelopes_respects_count_and_size() -> None:
    key = SigningKey.generate()
    records = []
    for i in range(200):
        fact = make_fact(("long " * 2000) + str(i), None, key.address)  # ~10 KB each
        records.append(SignedRecord(fact, key.sign_cid(fact.cid)))
    envelopes = pack_envelopes(records)
    assert sum(len(decode_envelope(e)) for e in envelopes) == 200
    assert all(len(e) <= MAX_ENVELOPE_BYTES for e in envelopes)


def test_vector_anchor_notice_and_bad_notices() -> None:
    notice = decode_anchor_notice(bytes.fromhex(VECTORS["anchor_notice"]))
    assert (notice.chain_id, notice.block_number) == (31337, 42)
    good = dag_cbor.decode(bytes.fromhex(VECTORS["anchor_notice"]))
    assert isinstance(good, dict)
    for change in ({"root": b"short"}, {"block": -1}, {"manifest": 7}, {"extra": 1}, {"v": 2}):
        with pytest.raises(InvalidEnvelope):
            decode_anchor_notice(dag_cbor.encode({**good, **change}))
    with pytest.raises(InvalidEnvelope):
        decode_anchor_notice(b"\xff")


def test_vector_fingerprints() -> None:
    items = ItemSet([bytes.fromhex(i) for i in VECTORS["reconcile"]["items"]])
    assert items.digest() == VECTORS["reconcile"]["set_digest"]


@pytest.mark.parametrize("difference", [0, 1, 7, 150, 2000])
def test_reconciliation_finds_exactly_the_difference(difference: int) -> None:
    rng = random.Random(difference)
    theirs = [os.urandom(36) for _ in range(20_000)]
    dropped = set(rng.sample(range(len(theirs)), difference))
    extra = [os.urandom(36) for _ in range(50)]  # ours only: not theirs to send
    mine = [x for i, x in enumerate(theirs) if i not in dropped] + extra
    missing, rounds, ranges = reconcile_locally(ItemSet(mine), ItemSet(theirs))
    assert sorted(missing) == sorted(theirs[i] for i in dropped)
    # answers keep to 4x their request (p2p.reconcile.answer_budget): where that binds, the
    # responder splits into 4 runs instead of 16, so a large difference takes a round or two more
    assert rounds <= 8
    # cost grows with the difference, not with the 20,000 items
    assert ranges <= 1 + 16 * 4 * (difference + 50)


def test_responder_skips_matching_ranges() -> None:
    same = ItemSet([os.urandom(36) for _ in range(1000)])
    answer = respond(same, {"t": "recon", "ranges": [[b"", None, same.fingerprint(b"", None)]]})
    assert answer == {"t": "recon", "ranges": [], "ids": []}
    with pytest.raises(ValueError):
        respond(same, {"t": "recon", "ranges": [[b"", None, b"short"]]})
