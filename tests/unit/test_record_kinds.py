"""The record-kind table (node.kinds) and the tombstone kind, held to the committed protocol
vectors (docs/vectors/p2p.json, section 2 of docs/protocol.md)."""

from __future__ import annotations

import json
from typing import Any, cast

import dag_cbor
import pytest

from node.attestation import Attestation, make_attestation
from node.cid import cid_string
from node.errors import InvalidFact, KnowhubError, SignatureMismatch
from node.facts import make_fact
from node.kinds import KINDS, decode_record, kind_of, subject_of, verify_record
from node.limits import MAX_REASON_BYTES
from node.manifest import InvalidManifest, build_manifest, read_manifest
from node.records import SignedRecord, sign_record
from node.signing import SigningKey
from node.tombstone import Tombstone, make_tombstone
from p2p.wire import decode_envelope
from tests.conftest import ROOT

VECTORS = json.loads((ROOT / "docs" / "vectors" / "p2p.json").read_text())
KEY = SigningKey.generate()


def test_the_table_names_each_kind_once_and_every_fact_stays_a_fact() -> None:
    assert set(KINDS) == {"fact", "tombstone", "attestation"}
    for vector in VECTORS["facts"]:  # v1 fact records have no kind key: their CIDs stand
        fact = decode_record(bytes.fromhex(vector["block"]))
        assert fact.kind == "fact" and fact.cid == vector["cid"]
        assert kind_of(bytes.fromhex(vector["block"])).name == "fact"


def test_the_tombstone_vector_decodes_verifies_and_names_its_fact() -> None:
    vector = VECTORS["tombstone"]
    record = verify_record(bytes.fromhex(vector["block"]), vector["signature"])
    assert isinstance(record.body, Tombstone)
    assert record.cid == vector["cid"] and record.body.record() == vector["record"]
    assert subject_of(record.body) == vector["revokes"]
    envelope = decode_envelope(bytes.fromhex(vector["envelope"]))
    assert [r.kind for r in envelope] == ["fact", "tombstone"]
    manifest = read_manifest(bytes.fromhex(vector["batch_manifest_with_kinds"]["block"]))
    kinds = {cid_string(link): manifest.kind_of(i) for i, link in enumerate(manifest.facts)}
    assert kinds[vector["cid"]] == "tombstone" and list(kinds.values()).count("fact") == 1


@pytest.mark.parametrize("bad", VECTORS["invalid_tombstones"][1:], ids=lambda b: b["why"])
def test_invalid_tombstone_vectors_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(InvalidFact):
        decode_record(bytes.fromhex(bad["block"]))


def test_a_tombstone_by_another_key_is_a_valid_record() -> None:
    # only a node that holds the fact can tell it is not the contributor's (node.revocation)
    bad = VECTORS["invalid_tombstones"][0]
    assert verify_record(bytes.fromhex(bad["block"]), bad["signature"]).kind == "tombstone"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"revokes": "not a cid"}, "revokes"),
        ({"revokes": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"}, "revokes"),  # CIDv0
        ({"revokes": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"}, "revokes"),
        ({"contributor": "0x" + "ab" * 20}, "contributor"),  # not checksummed
        ({"reason": "x" * (MAX_REASON_BYTES + 1)}, "reason"),
        ({"reason": "\u200b\ufeff"}, "reason"),
        ({"reason": "\ud800"}, "reason"),
        ({"reason": 7}, "reason"),
    ],
)
def test_make_tombstone_names_the_bad_field(change: dict[str, Any], field: str) -> None:
    fact = make_fact("A fact to revoke.", None, KEY.address)
    parts = {"revokes": fact.cid, "contributor": KEY.address, "reason": None} | change
    with pytest.raises(InvalidFact) as caught:
        make_tombstone(parts["revokes"], parts["contributor"], parts["reason"])
    assert caught.value.field == field


def test_any_multibase_of_the_fact_gives_one_tombstone() -> None:
    from multiformats import CID

    fact = make_fact("One fact, many spellings.", None, KEY.address)
    b58 = str(CID.decode(fact.cid).set(base="base58btc"))
    assert make_tombstone(b58, KEY.address).cid == make_tombstone(fact.cid, KEY.address).cid


def test_a_tombstone_must_be_canonical_and_signed_by_its_contributor() -> None:
    fact = make_fact("Signed and revoked.", None, KEY.address)
    tomb = make_tombstone(fact.cid, KEY.address, "typo")
    record = tomb.record()
    shuffled = dag_cbor.encode(record)[:1] + b"".join(
        dag_cbor.encode(k) + dag_cbor.encode(record[k]) for k in sorted(record)
    )
    assert shuffled != tomb.block
    with pytest.raises(InvalidFact, match="canonical"):
        decode_record(shuffled)
    other = SigningKey.generate()
    with pytest.raises(SignatureMismatch):
        verify_record(tomb.block, other.sign_cid(tomb.cid))
    signed = sign_record(tomb, KEY)
    assert (
        isinstance(signed, SignedRecord) and verify_record(tomb.block, signed.signature) == signed
    )


def test_leaves_carry_kinds_only_when_some_entry_is_not_a_fact() -> None:
    facts = [make_fact(f"Fact {i}.", None, KEY.address).cid for i in range(3)]
    plain, _ = build_manifest(facts)
    leaf = dag_cbor.decode(plain.data)
    assert isinstance(leaf, dict) and "kinds" not in leaf
    assert build_manifest(facts, {c: "fact" for c in facts})[0].cid == plain.cid
    with pytest.raises(InvalidManifest, match="canonical"):
        read_manifest(dag_cbor.encode({**leaf, "kinds": ["fact"] * 3}))
    with pytest.raises(InvalidManifest, match="parallel"):
        read_manifest(dag_cbor.encode({**leaf, "kinds": ["tombstone"]}))


def test_leaves_name_collections_only_when_some_fact_is_outside_default() -> None:
    plain = [make_fact(f"Fact {i}.", None, KEY.address).cid for i in range(2)]
    law = make_fact("A law fact.", None, KEY.address, collection="law").cid
    tomb = make_tombstone(plain[0], KEY.address).cid
    default_only, _ = build_manifest(plain, None, {c: "default" for c in plain})
    assert default_only.cid == build_manifest(plain)[0].cid  # canonical: no collections
    named, _ = build_manifest([*plain, law, tomb], {tomb: "tombstone"}, {law: "law"})
    node = read_manifest(named.data)
    by_cid = dict(zip((cid_string(c) for c in node.facts), node.collections or [], strict=True))
    assert by_cid == {plain[0]: "default", plain[1]: "default", law: "law", tomb: None}
    leaf: dict[str, Any] = cast(dict[str, Any], dag_cbor.decode(named.data))
    order = [cid_string(c) for c in leaf["facts"]]
    bad = [
        ("parallel", leaf["collections"][:-1]),
        ("canonical", ["default" if n else None for n in leaf["collections"]]),
        ("null for other kinds", ["law" if n is None else n for n in leaf["collections"]]),
        (
            "null for other kinds",
            [None if c == law else n for c, n in zip(order, leaf["collections"], strict=True)],
        ),
        ("collections", ["Law!" if n == "law" else n for n in leaf["collections"]]),
    ]
    for why, names in bad:
        with pytest.raises(InvalidManifest, match=why):
            read_manifest(dag_cbor.encode({**leaf, "collections": names}))
    for key in ("collections", "kinds", "signatures"):  # one encoding per leaf: no nulls
        with pytest.raises(InvalidManifest, match="not null"):
            read_manifest(dag_cbor.encode({**leaf, key: None}))
    vector = VECTORS["collection_fact"]["batch_manifest_with_collections"]
    listed = read_manifest(bytes.fromhex(vector["block"]))
    assert VECTORS["collection_fact"]["cid"] in {
        cid_string(c)
        for c, n in zip(listed.facts, listed.collections or [], strict=True)
        if n == "medicine"
    }


def test_oversized_and_garbage_blocks_are_refused_before_decoding() -> None:
    for block in (b"\xff" * 10, b"\xa0", dag_cbor.encode([1, 2]), b"\x00" * (64 * 1024)):
        with pytest.raises(KnowhubError):
            decode_record(block)


def test_the_superseding_fact_vector_is_a_version_2_fact() -> None:
    vector = VECTORS["superseding_fact"]
    record = verify_record(bytes.fromhex(vector["block"]), vector["signature"])
    assert record.kind == "fact" and record.cid == vector["cid"]
    assert record.body.record() == vector["record"] and vector["record"]["v"] == 2
    assert subject_of(record.body) == VECTORS["facts"][0]["cid"]
    wrong_version = {**vector["record"], "v": 1}
    with pytest.raises(InvalidFact, match="version"):
        decode_record(dag_cbor.encode(wrong_version))
    no_target = {k: v for k, v in vector["record"].items() if k != "supersedes"}
    with pytest.raises(InvalidFact, match="version"):
        decode_record(dag_cbor.encode({**no_target, "v": 2}))


def test_the_attestation_vector_decodes_verifies_and_names_its_fact() -> None:
    vector = VECTORS["attestation"]
    record = verify_record(bytes.fromhex(vector["block"]), vector["signature"])
    assert isinstance(record.body, Attestation)
    assert record.cid == vector["cid"] and record.body.record() == vector["record"]
    assert record.contributor == vector["signer"]["address"]
    assert subject_of(record.body) == vector["about"]
    envelope = decode_envelope(bytes.fromhex(vector["envelope"]))
    assert [r.kind for r in envelope] == ["fact", "attestation"]
    made = make_attestation(vector["about"], "endorse", record.contributor, vector["record"]["at"])
    assert made.block.hex() == vector["block"]


@pytest.mark.parametrize("bad", VECTORS["invalid_attestations"], ids=lambda b: b["why"])
def test_invalid_attestation_vectors_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(InvalidFact):
        decode_record(bytes.fromhex(bad["block"]))


def test_a_later_attestation_supersedes_by_at_then_cid() -> None:
    cid = VECTORS["facts"][0]["cid"]
    address = VECTORS["attestation"]["signer"]["address"]
    early = make_attestation(cid, "endorse", address, 10)
    late = make_attestation(cid, "dispute", address, 11)
    same_time = make_attestation(cid, "dispute", address, 10)
    assert late.supersedes(early) and not early.supersedes(late)
    assert same_time.supersedes(early) == (same_time.cid > early.cid)
