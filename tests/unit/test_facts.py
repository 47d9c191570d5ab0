from __future__ import annotations

import base64
from typing import Any

import dag_cbor
import dag_json
import pytest

from node.cid import (
    canonical_cid_string,
    cid_string,
    dag_cbor_cid,
    parse_cid,
    raw_cid,
    verify_block,
)
from node.errors import InvalidCid, InvalidFact
from node.facts import decode_fact, make_fact
from node.limits import MAX_METADATA_BYTES, MAX_TEXT_BYTES
from tests.verifying_client import cid_of  # CIDs computed by hand from the spec


def test_raw_cids_match_ipfs_reference(ipfs_vectors: dict[str, Any]) -> None:
    assert len(ipfs_vectors["raw"]) >= 5
    for case in ipfs_vectors["raw"]:
        data = case["utf8"].encode("utf-8")
        assert raw_cid(data) == case["cid"]
        assert cid_of(0x55, data) == case["cid"]


def test_dag_cbor_bytes_and_cids_match_ipfs_reference(ipfs_vectors: dict[str, Any]) -> None:
    assert ipfs_vectors["dag_cbor"]
    for case in ipfs_vectors["dag_cbor"]:
        block = dag_cbor.encode(dag_json.decode(case["input_dag_json"].encode()))
        assert block.hex() == case["dag_cbor_hex"]
        assert dag_cbor_cid(block) == case["cid"]
        canonical_json = dag_json.encode(dag_cbor.decode(block))
        assert canonical_json == case["canonical_dag_json"].encode()
        assert cid_of(0x0129, canonical_json) == case["dag_json_cid"]
        assert cid_of(0x71, bytes.fromhex(case["dag_cbor_hex"])) == case["cid"]


def test_fact_record_is_canonical_dag_cbor_with_a_bafyrei_cid() -> None:
    fact = make_fact(
        "The Eiffel Tower is in Paris.", {"lang": "en", "tags": ["a", "b"], "n": 3, "ok": True}
    )
    assert fact.cid.startswith("bafyrei")
    assert fact.cid == cid_of(0x71, fact.block)
    decoded = dag_cbor.decode(fact.block)
    assert decoded == {
        "v": 1,
        "text": "The Eiffel Tower is in Paris.",
        "contributor": None,
        "metadata": {"lang": "en", "tags": ["a", "b"], "n": 3, "ok": True},
    }
    # key order of the submission does not matter; the record is canonical
    same = make_fact(
        "The Eiffel Tower is in Paris.", {"ok": True, "n": 3, "tags": ["a", "b"], "lang": "en"}
    )
    assert same.cid == fact.cid and same.block == fact.block
    assert decode_fact(fact.block) == fact


def test_identity_depends_on_every_field() -> None:
    base = make_fact("x", {"a": "1"})
    assert make_fact("x ", {"a": "1"}).cid != base.cid
    assert make_fact("x", {"a": 1}).cid != base.cid
    assert make_fact("x", {"a": ["1"]}).cid != base.cid
    assert make_fact("x", {"a": "1"}, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8").cid != base.cid


@pytest.mark.parametrize(
    ("text", "metadata", "contributor", "field"),
    [
        ("", None, None, "text"),
        ("   \n\t", None, None, "text"),
        (5, None, None, "text"),
        ("x" * (MAX_TEXT_BYTES + 1), None, None, "text"),
        ("é" * (MAX_TEXT_BYTES // 2 + 1), None, None, "text"),  # bytes, not characters
        ("bad \ud800 surrogate", None, None, "text"),
        ("x", [], None, "metadata"),
        ("x", {"a": 1.5}, None, "metadata.a"),
        ("x", {"a": None}, None, "metadata.a"),
        ("x", {"a": {"nested": "map"}}, None, "metadata.a"),
        ("x", {"a": ["ok", 1]}, None, "metadata.a"),
        ("x", {"a": 2**64}, None, "metadata.a"),
        ("x", {"": "empty key"}, None, "metadata"),
        ("x", {"$in": "reserved"}, None, "metadata.$in"),
        ("x", {"k": "v" * MAX_METADATA_BYTES}, None, "metadata"),
        ("x", None, "0x70997970c51812dc3a010c7d01b50e0d17dc79c8", "contributor"),  # not checksummed
        ("x", None, "not an address", "contributor"),
    ],
)
def test_invalid_submissions_are_rejected_with_the_field(
    text: Any, metadata: Any, contributor: Any, field: str
) -> None:
    with pytest.raises(InvalidFact) as info:
        make_fact(text, metadata, contributor)
    assert info.value.field == field
    assert info.value.message


def test_text_at_the_size_limit_is_accepted() -> None:
    assert make_fact("x" * MAX_TEXT_BYTES).cid


def test_decode_rejects_non_canonical_and_foreign_blocks() -> None:
    fact = make_fact("hello", {"b": "2", "a": "1"})
    enc = dag_cbor.encode
    # the same map with its keys out of canonical (length-first) order
    non_canonical = (
        b"\xa4"
        + enc("text")
        + enc("hello")
        + enc("v")
        + enc(1)
        + enc("metadata")
        + enc({"a": "1", "b": "2"})
        + enc("contributor")
        + enc(None)
    )
    assert non_canonical != fact.block
    with pytest.raises(InvalidFact, match="canonical"):
        decode_fact(non_canonical)
    with pytest.raises(InvalidFact):
        decode_fact(dag_cbor.encode({"v": 2, "text": "x", "metadata": {}, "contributor": None}))
    with pytest.raises(InvalidFact):
        decode_fact(dag_cbor.encode({"v": 1, "text": "x", "metadata": {}}))
    with pytest.raises(InvalidFact):
        decode_fact(b"\xff\x00garbage")


def test_cid_parsing_and_verification() -> None:
    cid = raw_cid(b"hello")
    assert canonical_cid_string(cid) == cid
    as_b58 = str(parse_cid(cid).set(base="base58btc"))
    assert as_b58.startswith("z") and canonical_cid_string(as_b58) == cid
    assert verify_block(cid, b"hello") and not verify_block(cid, b"hellO")
    for bad in ["", "not-a-cid", "bafy", "x" * 500, "Qm123"]:
        with pytest.raises(InvalidCid):
            parse_cid(bad)


def test_canonical_cid_fast_path_agrees_with_multiformats() -> None:
    """The fast path (a canonical 59-character sha2-256 CIDv1) returns exactly what parsing
    would, and anything else still goes through the full parser."""
    for cid in (raw_cid(b"a"), dag_cbor_cid(b"b"), make_fact("fast path").cid):
        assert canonical_cid_string(cid) == cid_string(parse_cid(cid)) == cid
        assert canonical_cid_string(cid.upper()) == cid  # base32upper multibase
        assert canonical_cid_string(str(parse_cid(cid).set(base="base58btc"))) == cid
    # 59 characters after "b", but not a CID this node makes: the parser decides
    sha1 = "b" + base64.b32encode(b"\x01\x71\x11\x14" + bytes(32)).decode().lower().rstrip("=")
    for odd in ("b" + "a" * 58, "b" + "7" * 58, sha1[:59]):
        try:
            expected: str | None = cid_string(parse_cid(odd))
        except InvalidCid:
            expected = None
        if expected is None:
            with pytest.raises(InvalidCid):
                canonical_cid_string(odd)
        else:
            assert canonical_cid_string(odd) == expected


def test_direct_cids_equal_what_multiformats_builds() -> None:
    from node.cid import DAG_CBOR as CBOR
    from node.cid import RAW, cid_for

    for size in (0, 1, 31, 32, 33, 1000):
        data = bytes(range(256))[:size] * 3
        assert dag_cbor_cid(data) == str(cid_for(data, CBOR))
        assert raw_cid(data) == str(cid_for(data, RAW))
