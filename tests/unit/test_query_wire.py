"""The federated query protocol's messages (p2p.query_wire, p2p.pools_wire) against
docs/vectors/query.json, and hostile requests and answers refused as malformed."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any, cast

import dag_cbor
import numpy as np
import pytest
from eth_utils.address import to_checksum_address

from node.cid import cid_from_bytes, cid_to_bytes, parse_cid
from node.federation import check_remote_hit
from node.keyword_stats import DocTerms, TermStats
from node.limits import MAX_K, MAX_POOL_DEPTH, MAX_QUERY_TERMS, MAX_TERM_BYTES, MAX_TERM_WEIGHT
from node.ports import (
    FetchAnswer,
    FetchQuery,
    PeerRequest,
    PoolEntry,
    PoolsAnswer,
    PoolsQuery,
    RemoteAnswer,
    RemoteHit,
    RemoteQuery,
)
from node.search import SearchMode
from p2p.pools_wire import MAX_RELEVANCE
from p2p.query_wire import (
    MAX_REQUEST_BYTES,
    RemoteError,
    decode_answer,
    decode_request,
    encode_answer,
    encode_error,
    encode_request,
)
from p2p.wire import InvalidEnvelope, encode_varint
from tests.conftest import ROOT

VECTORS = json.loads((ROOT / "docs" / "vectors" / "query.json").read_text())


def cbor(hexed: str) -> dict[str, Any]:
    return cast(dict[str, Any], dag_cbor.decode(bytes.fromhex(hexed)))


def asked(k: int) -> RemoteQuery:
    """A query request of depth ``k`` (what a hits answer is judged against)."""
    return RemoteQuery("blood", (1.0,), "model", k, SearchMode.HYBRID, ("medicine",))


def test_committed_vectors_are_current() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/make_query_vectors.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("case", VECTORS["requests"], ids=lambda c: c["name"])
def test_requests_decode_to_their_fields_and_encode_back(case: dict[str, Any]) -> None:
    msg = cbor(case["message"])
    query = decode_request(msg)
    assert isinstance(query, RemoteQuery)
    want = case["decoded"]
    assert query.text == want["text"] and query.model_cid == want["model"]
    assert np.allclose(query.vector, want["vector"], atol=1e-7)
    assert (query.k, query.mode.value, list(query.collections)) == (
        want["k"],
        want["mode"],
        want["collections"],
    )
    assert (None if query.filter is None else query.filter.to_json()) == want["filter"]
    assert query.include_superseded == want["superseded"]
    assert dag_cbor.encode(encode_request(query)).hex() == case["message"]
    framed = bytes.fromhex(case["framed"])
    assert framed.endswith(bytes.fromhex(case["message"])) and framed[0] == len(msg_bytes(case))


def msg_bytes(case: dict[str, Any]) -> bytes:
    return bytes.fromhex(case["message"])


@pytest.mark.parametrize("case", VECTORS["invalid_requests"], ids=lambda c: c["name"])
def test_invalid_requests_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        decode_request(cbor(case["message"]))
    assert case["reason"] in caught.value.message


HOSTILE_TEXTS: list[object] = [None, 7, b"bytes", "x" * (MAX_REQUEST_BYTES + 1), ["a"]]


@pytest.mark.parametrize("text", HOSTILE_TEXTS, ids=range(len(HOSTILE_TEXTS)))
def test_hostile_texts_are_refused(text: object) -> None:
    msg = cbor(VECTORS["requests"][0]["message"])
    with pytest.raises(InvalidEnvelope):
        decode_request({**msg, "text": text})


def test_hostile_vectors_and_models_are_refused() -> None:
    msg = cbor(VECTORS["requests"][0]["message"])
    inf = np.array([np.inf, 1.0], dtype="<f4").tobytes()
    for vector in (b"", inf, b"\x00" * (4 * 4097), [0.6, 0.8], "AAAA"):
        with pytest.raises(InvalidEnvelope):
            decode_request({**msg, "vector": vector})
    for model in ("", "b" * 129, 5, None):
        with pytest.raises(InvalidEnvelope):
            decode_request({**msg, "model": model})


@pytest.mark.parametrize("case", VECTORS["answers"], ids=lambda c: c["name"])
def test_answers_decode(case: dict[str, Any]) -> None:
    msg = cbor(case["message"])
    if "code" in case:
        with pytest.raises(RemoteError) as caught:
            decode_answer(msg, asked(case["k"]))
        assert caught.value.code == case["code"]
    else:
        answer = decode_answer(msg, asked(case["k"]))
        assert isinstance(answer, RemoteAnswer) and len(answer.hits) == len(msg["hits"])


@pytest.mark.parametrize("case", VECTORS["invalid_answers"], ids=lambda c: c["name"])
def test_invalid_answers_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        decode_answer(cbor(case["message"]), asked(case["k"]))
    assert case["reason"] in caught.value.message


def test_hostile_hits_are_refused() -> None:
    good = cbor(VECTORS["answers"][0]["message"])["hits"][0]
    for bad in (
        {**good, "score": float("nan")},
        {**good, "relevance": float("inf")},
        {**good, "score": "1"},
        {**good, "relevance": True},
        {**good, "cid": 5},
        {**good, "proof": []},
        {**good, "proof": {1: "x"}},
        "hit",
    ):
        with pytest.raises(InvalidEnvelope):
            decode_answer({"v": 1, "t": "hits", "hits": [bad]}, asked(5))


@pytest.mark.parametrize("case", VECTORS["hits"], ids=lambda c: c["name"])
def test_remote_hit_verdicts(case: dict[str, Any]) -> None:
    raw = case["hit"]
    hit = RemoteHit(raw["cid"], raw["score"], raw["relevance"], raw["proof"])
    got = check_remote_hit(hit, ("medicine",), None, None)
    if case["verdict"] == "dropped":
        assert got is None
    elif case["verdict"] == "failed":
        assert isinstance(got, str) and got == case["reason"]
    else:
        assert got is not None
        assert not isinstance(got, str) and got.check.verdict.value == case["verdict"]
        assert base64.b64decode(raw["proof"]["block"]) == got.fact.block


# The two-phase messages: pools and fetch.

KNOWN = "0x" + bytes(range(20)).hex()
CHECKSUM = to_checksum_address(KNOWN)


def request_of(case: dict[str, Any]) -> PeerRequest:
    return decode_request(cbor(case["request"]))


@pytest.mark.parametrize(
    "case", VECTORS["pools_requests"] + VECTORS["fetch_requests"], ids=lambda c: c["name"]
)
def test_two_phase_requests_decode_and_encode_back(case: dict[str, Any]) -> None:
    request = decode_request(cbor(case["message"]))
    want = case["decoded"]
    if isinstance(request, PoolsQuery):
        assert request.query.k == want["k"]
        assert [list(t) for t in request.terms] == want["terms"]
    else:
        assert isinstance(request, FetchQuery)
        assert list(request.cids) == want["cids"]
        assert list(request.collections) == want["collections"]
    data = dag_cbor.encode(encode_request(request))
    assert data.hex() == case["message"]
    assert bytes.fromhex(case["framed"]) == encode_varint(len(data)) + data


@pytest.mark.parametrize(
    "case",
    VECTORS["invalid_pools_requests"] + VECTORS["invalid_fetch_requests"],
    ids=lambda c: c["name"],
)
def test_invalid_two_phase_requests_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        decode_request(cbor(case["message"]))
    assert case["reason"] in caught.value.message


@pytest.mark.parametrize("case", VECTORS["pools_answers"], ids=lambda c: c["name"])
def test_pools_answers_decode_and_encode_back(case: dict[str, Any]) -> None:
    msg, request = cbor(case["message"]), request_of(case)
    if "code" in case:
        with pytest.raises(RemoteError) as caught:
            decode_answer(msg, request)
        assert caught.value.code == case["code"]
        return
    answer = decode_answer(msg, request)
    assert isinstance(answer, PoolsAnswer)
    want = case["decoded"]
    assert list(answer.searched) == want["searched"]
    stats = answer.stats
    assert {"docs": stats.docs, "length": stats.length, "df": list(stats.df)} == want["stats"]
    got = [
        {
            "cid": e.cid,
            "contributor": e.contributor,
            "relevance": e.relevance,
            "dense": e.dense,
            "keyword": e.keyword,
            "length": e.terms.length,
            "tf": list(e.terms.tf),
        }
        for e in answer.entries
    ]
    assert got == want["entries"]
    assert dag_cbor.encode(encode_answer(answer)).hex() == case["message"]


@pytest.mark.parametrize("case", VECTORS["fetch_answers"], ids=lambda c: c["name"])
def test_fetch_answers_decode_and_encode_back(case: dict[str, Any]) -> None:
    answer = decode_answer(cbor(case["message"]), request_of(case))
    assert isinstance(answer, FetchAnswer)
    assert [cid for cid, _ in answer.proofs] == case["decoded"]["cids"]
    assert dag_cbor.encode(encode_answer(answer)).hex() == case["message"]


@pytest.mark.parametrize(
    "case",
    VECTORS["invalid_pools_answers"] + VECTORS["invalid_fetch_answers"],
    ids=lambda c: c["name"],
)
def test_invalid_two_phase_answers_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        decode_answer(cbor(case["message"]), request_of(case))
    assert case["reason"] in caught.value.message


def pools_request(k: int, n_terms: int) -> PoolsQuery:
    query = RemoteQuery("t", (1.0, 0.0), "model", k, SearchMode.KEYWORD, ("medicine",))
    return PoolsQuery(query, tuple((f"t{i}", 1 + i % MAX_TERM_WEIGHT) for i in range(n_terms)))


def test_pools_bounds_are_inclusive() -> None:
    """The deepest pool, the most terms, the longest term and the heaviest weight pass."""
    request = pools_request(MAX_POOL_DEPTH, MAX_QUERY_TERMS - 1)
    longest = ("é" * (MAX_TERM_BYTES // 2), MAX_TERM_WEIGHT)
    request = PoolsQuery(request.query, (*request.terms, longest))
    assert decode_request(cbor(dag_cbor.encode(encode_request(request)).hex())) == request
    assert MAX_POOL_DEPTH == 4 * MAX_K


def test_a_full_pools_answer_round_trips() -> None:
    """k entries of each pool (2k in all, none twice), either contributor form, any relevance
    within the tolerance: decoded back to what was encoded."""
    k, n_terms = 3, 2
    request = pools_request(k, n_terms)
    entries = tuple(
        PoolEntry(
            cid_from_bytes(bytes([1, 0x71, 0x12, 0x20, i]) + bytes(31)),
            CHECKSUM if i % 2 else None,
            (-MAX_RELEVANCE, MAX_RELEVANCE, 0, 0.5, -0.25, 1.0)[i],
            i < k,
            i >= k,
            DocTerms(10, (i, 1)),
        )
        for i in range(2 * k)
    )
    answer = PoolsAnswer(("medicine",), TermStats(6, 60, (5, 6)), entries)
    msg = cast(dict[str, Any], dag_cbor.decode(dag_cbor.encode(encode_answer(answer))))
    assert decode_answer(msg, request) == answer
    assert msg["entries"][1][1] == bytes(range(20))  # the wire holds the address bytes


def test_hostile_pool_entries_are_refused() -> None:
    request = pools_request(2, 2)
    cid = cid_to_bytes(cid_from_bytes(bytes([1, 0x71, 0x12, 0x20]) + bytes(32)))
    good: list[Any] = [cid, None, 0.5, 3, 4, [1, 1]]
    base = {"v": 1, "t": "pools", "searched": ["medicine"]}
    stats = {"docs": 5, "length": 50, "df": [1, 1]}
    assert decode_answer({**base, "stats": stats, "entries": [good]}, request)
    hostile_entries: list[object] = [
        "entry",
        good[:5],
        [*good, 0],
        [b"", *good[1:]],
        [b"\x01" * 200, *good[1:]],
        [good[0], "0x" + "00" * 20, *good[2:]],
        [*good[:2], float("nan"), *good[3:]],
        [*good[:2], float("inf"), *good[3:]],
        [*good[:2], True, *good[3:]],
        [*good[:2], -1.01, *good[3:]],
        [*good[:3], 4, *good[4:]],
        [*good[:3], 1.0, *good[4:]],
        [*good[:4], 2**53, good[5]],
        [*good[:4], 4.0, good[5]],
        [*good[:5], [1, -1]],
        [*good[:5], [1, True]],
        [*good[:5], (1, 1, 1)],
    ]
    for entry in hostile_entries:
        with pytest.raises(InvalidEnvelope):
            decode_answer({**base, "stats": stats, "entries": [entry]}, request)
    for bad_stats in (
        None,
        {**stats, "extra": 1},
        {**stats, "docs": -1},
        {**stats, "length": 1.5},
        {**stats, "df": [1, 1, 1]},
        {**stats, "df": "11"},
    ):
        with pytest.raises(InvalidEnvelope):
            decode_answer({**base, "stats": bad_stats, "entries": []}, request)
    for searched in (None, ["Medicine"], ["a"] * 33):
        with pytest.raises(InvalidEnvelope):
            decode_answer({**base, "searched": searched, "stats": stats, "entries": []}, request)


def test_each_answer_type_follows_its_request() -> None:
    """A hits answer to a pools or fetch request, a pools answer to a query: malformed; an
    error answers any request."""
    pools = pools_request(2, 1)
    fetch = FetchQuery((cid_from_bytes(bytes([1, 0x71, 0x12, 0x20]) + bytes(32)),), ("medicine",))
    answers = {
        "hits": encode_answer(RemoteAnswer((), ("medicine",))),
        "pools": encode_answer(PoolsAnswer(("medicine",), TermStats(0, 0, (0,)), ())),
        "proofs": encode_answer(FetchAnswer(())),
    }
    for request, kind in ((pools.query, "hits"), (pools, "pools"), (fetch, "proofs")):
        for other, msg in answers.items():
            if other == kind:
                assert decode_answer(msg, request) is not None
            else:
                with pytest.raises(InvalidEnvelope):
                    decode_answer(msg, request)
        with pytest.raises(RemoteError):
            decode_answer(encode_error("not_held", "none"), request)


def test_fetch_answers_compare_canonical_cids() -> None:
    """A proof named by another spelling of an asked CID is that CID, and decodes to the
    canonical string; asked CIDs travel as bytes and decode to the same strings."""
    cid = cid_from_bytes(bytes([1, 0x71, 0x12, 0x20]) + bytes(range(32)))
    fetch = FetchQuery((cid,), ("medicine",))
    assert decode_request(encode_request(fetch)) == fetch
    other_spelling = str(parse_cid(cid).set(base="base58btc"))
    assert other_spelling != cid
    msg = {"v": 1, "t": "proofs", "proofs": [{"cid": other_spelling, "proof": {"a": 1}}]}
    answer = decode_answer(msg, fetch)
    assert isinstance(answer, FetchAnswer) and answer.proofs == ((cid, {"a": 1}),)
    for bad in ("x" * 200, 5, None, b"\x01"):
        with pytest.raises(InvalidEnvelope):
            decode_answer({**msg, "proofs": [{"cid": bad, "proof": {}}]}, fetch)
    with pytest.raises(InvalidEnvelope):
        decode_answer({**msg, "proofs": "proofs"}, fetch)
