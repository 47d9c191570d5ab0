"""The two-phase sections of docs/vectors/query.json (``make_query_vectors.py`` writes them):
pools and fetch requests with their framed bytes and decoded fields, malformed requests a
responder must refuse, answers decoded with their request in hand, and malformed answers an
asker must refuse (p2p/query_wire.py, p2p/pools_wire.py; docs/protocol.md section 6c).

Each answer case carries its ``request`` (hex): an answer is only judged against it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dag_cbor

from node.facts import make_fact
from node.keyword_stats import DocTerms, TermStats
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
from node.signing import SigningKey
from p2p.query_wire import encode_answer, encode_error, encode_request
from p2p.wire import encode_varint

DROP = object()


def _hex(msg: dict[str, Any]) -> str:
    return dag_cbor.encode(msg).hex()


def _changed(msg: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = {**msg, **change}
    for key in [k for k, v in change.items() if v is DROP]:
        del out[key]
    return out


def _framed(request: PeerRequest) -> dict[str, str]:
    data = dag_cbor.encode(encode_request(request))
    return {"message": data.hex(), "framed": (encode_varint(len(data)) + data).hex()}


def pools_vectors(
    key: SigningKey, model: str, vector: tuple[float, ...], hit: RemoteHit
) -> dict[str, Any]:
    """The sections, around ``hit`` (an honest remote hit of a fact of ``key``'s)."""
    lungs = make_fact("The lungs take in oxygen from the air.", None, None, collection="medicine")
    law = make_fact("Law fact.", None, key.address, collection="law")
    terms = (("blood", 1), ("oxygen", 1))

    def pools_query(k: int) -> PoolsQuery:
        query = RemoteQuery("blood oxygen", vector, model, k, SearchMode.HYBRID, ("medicine",))
        return PoolsQuery(query, terms)

    request, shallow = pools_query(20), pools_query(2)
    entries = (
        PoolEntry(hit.cid, key.address, 0.71, True, True, DocTerms(3, (1, 1))),
        PoolEntry(lungs.cid, None, 0.43, True, False, DocTerms(8, (0, 1))),
    )
    answer = PoolsAnswer(("medicine",), TermStats(2, 11, (1, 2)), entries)
    good = encode_answer(answer)
    entry = good["entries"][0]

    def with_entries(*rows: list[Any]) -> dict[str, Any]:
        return {**good, "entries": list(rows)}

    def row(**change: Any) -> list[Any]:
        fields = ["cid", "contributor", "relevance", "pools", "length", "tf"]
        return [change.get(name, value) for name, value in zip(fields, entry, strict=True)]

    fetch = FetchQuery((hit.cid, lungs.cid), ("medicine",))
    proofs = encode_answer(FetchAnswer(((hit.cid, hit.proof),)))
    proof_row = proofs["proofs"][0]
    base_pools, base_fetch = encode_request(request), encode_request(fetch)

    def bad_request(base: dict[str, Any]) -> Callable[..., dict[str, Any]]:
        def make(name: str, reason: str, **change: Any) -> dict[str, Any]:
            return {"name": name, "message": _hex(_changed(base, change)), "reason": reason}

        return make

    def bad_answer(asked: PeerRequest) -> Callable[[str, dict[str, Any], str], dict[str, Any]]:
        def make(name: str, msg: dict[str, Any], reason: str) -> dict[str, Any]:
            req = _hex(encode_request(asked))
            return {"name": name, "request": req, "message": _hex(msg), "reason": reason}

        return make

    bad_pools, bad_fetch = bad_request(base_pools), bad_request(base_fetch)
    bad_pools_answer, bad_proofs = bad_answer(shallow), bad_answer(fetch)
    return {
        "pools_requests": [
            {
                "name": "pools",
                **_framed(request),
                "decoded": {"k": request.query.k, "terms": [list(t) for t in terms]},
            }
        ],
        "invalid_pools_requests": [
            bad_pools("no_terms", "terms must list 1-64", terms=DROP),
            bad_pools("empty_terms", "terms must list 1-64", terms=[]),
            bad_pools(
                "too_many_terms", "terms must list 1-64", terms=[[f"t{i}", 1] for i in range(65)]
            ),
            bad_pools("term_not_pair", "a term is a [term, weight] pair", terms=[["blood"]]),
            bad_pools("empty_term", "a term is a string of 1-64 bytes", terms=[["", 1]]),
            bad_pools("long_term", "a term is a string of 1-64 bytes", terms=[["é" * 33, 1]]),
            bad_pools("zero_weight", "weight is an integer 1-64", terms=[["blood", 0]]),
            bad_pools("bool_weight", "weight is an integer 1-64", terms=[["blood", True]]),
            bad_pools("duplicate_terms", "terms must be distinct", terms=[["a", 1], ["a", 2]]),
            bad_pools("k_over_pool_depth", "k must be an integer 1-400", k=401),
            bad_pools("query_with_terms", "unknown request keys", t="query"),
            bad_pools("unknown_type", "a request is a version 1 query map", t="pool"),
        ],
        "pools_answers": [
            {
                "name": "pools",
                "request": _hex(encode_request(shallow)),
                "message": _hex(good),
                "decoded": {
                    "searched": list(answer.searched),
                    "stats": {"docs": 2, "length": 11, "df": [1, 2]},
                    "entries": [
                        {
                            "cid": e.cid,
                            "contributor": e.contributor,
                            "relevance": e.relevance,
                            "dense": e.dense,
                            "keyword": e.keyword,
                            "length": e.terms.length,
                            "tf": list(e.terms.tf),
                        }
                        for e in entries
                    ],
                },
            },
            {
                "name": "error",
                "request": _hex(encode_request(shallow)),
                "message": _hex(encode_error("busy", "over the query rate")),
                "code": "busy",
            },
        ],
        "invalid_pools_answers": [
            bad_pools_answer(
                "hits_to_pools",
                encode_answer(RemoteAnswer((), ("medicine",))),
                "the answer must be pools or error",
            ),
            bad_pools_answer(
                "too_many_entries",
                with_entries(
                    *(row(cid=bytes([1, 0x71, 0x12, 0x20, i]) + bytes(31)) for i in range(5))
                ),
                "entries lists at most 2k=4",
            ),
            bad_pools_answer(
                "too_many_dense",
                with_entries(
                    *(
                        row(cid=bytes([1, 0x71, 0x12, 0x20, i]) + bytes(31), pools=1)
                        for i in range(3)
                    )
                ),
                "at most k=2 entries of each pool",
            ),
            bad_pools_answer(
                "duplicate_cid", with_entries(entry, row(pools=2)), "an entry's cid appears twice"
            ),
            bad_pools_answer(
                "cid_as_string", with_entries(row(cid=hit.cid)), "an entry's cid is a binary CID"
            ),
            bad_pools_answer(
                "nothing_searched",
                {**good, "searched": []},
                "a pools answer names at least one collection it searched",
            ),
            bad_pools_answer(
                "cid_not_a_cid",
                with_entries(row(cid=b"\xff" * 36)),
                "an entry's cid is a binary CID",
            ),
            bad_pools_answer(
                "contributor_19_bytes",
                with_entries(row(contributor=entry[1][:19])),
                "contributor is 20 bytes or null",
            ),
            bad_pools_answer(
                "relevance_out_of_range",
                with_entries(row(relevance=1.5)),
                "relevance is a finite number within 1.0001",
            ),
            bad_pools_answer(
                "no_pool", with_entries(row(pools=0)), "an entry's pools is 1 (dense), 2"
            ),
            bad_pools_answer(
                "tf_count_mismatch",
                with_entries(row(tf=[1])),
                "tf must have one count per query term (2)",
            ),
            bad_pools_answer(
                "tf_over_length",
                with_entries(row(length=1)),
                "term frequencies must be counts within the document's length",
            ),
            bad_pools_answer(
                "negative_length",
                with_entries(row(length=-1)),
                "an entry's length is an integer 0-",
            ),
            bad_pools_answer(
                "df_over_docs",
                {**good, "stats": {"docs": 1, "length": 11, "df": [1, 2]}},
                "each df at most the documents",
            ),
            bad_pools_answer(
                "df_count_mismatch",
                {**good, "stats": {"docs": 2, "length": 11, "df": [1]}},
                "df must have one count per query term (2)",
            ),
            bad_pools_answer(
                "no_stats",
                _changed(good, {"stats": DROP}),
                "exactly v, t, searched, stats and entries",
            ),
        ],
        "fetch_requests": [
            {
                "name": "fetch",
                **_framed(fetch),
                "decoded": {"cids": list(fetch.cids), "collections": list(fetch.collections)},
            }
        ],
        "invalid_fetch_requests": [
            bad_fetch("no_cids", "cids must list 1-100", cids=[]),
            bad_fetch("too_many_cids", "cids must list 1-100", cids=[base_fetch["cids"][0]] * 101),
            bad_fetch(
                "duplicate_cid", "a fetched cid appears twice", cids=[base_fetch["cids"][0]] * 2
            ),
            bad_fetch("cid_as_string", "a fetched cid is a binary CID", cids=[hit.cid]),
            bad_fetch("no_collections", "collections must list", collections=DROP),
            bad_fetch("bad_collection", "collections:", collections=["Medicine"]),
            bad_fetch("query_key", "unknown request keys", k=5),
        ],
        "fetch_answers": [
            {
                "name": "proofs",
                "request": _hex(base_fetch),
                "message": _hex(proofs),
                "decoded": {"cids": [hit.cid]},
            },
            {
                "name": "none_held",
                "request": _hex(base_fetch),
                "message": _hex(encode_answer(FetchAnswer(()))),
                "decoded": {"cids": []},
            },
        ],
        "invalid_fetch_answers": [
            bad_proofs(
                "hits_to_fetch",
                encode_answer(RemoteAnswer((hit,), ("medicine",))),
                "the answer must be proofs or error",
            ),
            bad_proofs(
                "unasked_cid",
                {**proofs, "proofs": [{**proof_row, "cid": law.cid}]},
                "a proof's cid is one of the asked",
            ),
            bad_proofs(
                "not_a_cid",
                {**proofs, "proofs": [{**proof_row, "cid": "blood"}]},
                "a proof's cid is one of the asked",
            ),
            bad_proofs(
                "duplicate_cid",
                {**proofs, "proofs": [proof_row, proof_row]},
                "a proof's cid appears twice",
            ),
            bad_proofs(
                "more_than_asked",
                {**proofs, "proofs": [proof_row] * 3},
                "proofs lists at most the 2 asked",
            ),
            bad_proofs(
                "proof_not_a_map",
                {**proofs, "proofs": [{**proof_row, "proof": ["block"]}]},
                "a proof is a map with string keys",
            ),
            bad_proofs(
                "extra_key",
                {**proofs, "proofs": [{**proof_row, "score": 1.0}]},
                "a proof entry is a map of exactly",
            ),
            bad_proofs(
                "searched_key",
                {**proofs, "searched": ["medicine"]},
                "a proofs answer has exactly v, t and proofs",
            ),
        ],
    }
