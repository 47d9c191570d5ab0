"""The messages of ``/knowhub/query/1`` (federated query, docs/protocol.md section 6c): pure
encode and strict decode, test-vectored in ``docs/vectors/query.json``. One entry point each
way: ``encode_request`` / ``decode_request`` (dispatching on ``t``) and ``encode_answer`` /
``decode_answer`` (with the request in hand: its type says the answer's). The parts of the
two-phase messages (terms, stats, entries, CIDs, proofs) are ``p2p.pools_wire``'s.

A request is one DAG-CBOR map, of three types::

    {"v": 1, "t": "query", "text": str, "vector": bytes, "model": str, "k": int,
     "mode": "dense" | "keyword" | "hybrid", "collections": [str, ...],
     "filter"?: {key: {"$in": [scalar, ...]}}, "superseded"?: bool}
    {the same keys with "t": "pools", k 1-MAX_POOL_DEPTH, "terms": [[term, weight], ...]}
    {"v": 1, "t": "fetch", "cids": [bytes, ...], "collections": [str, ...]}

``vector`` is the asking node's unit query embedding as little-endian float32, made by the
model whose CID is ``model``. A ``pools`` request asks, per ranker, the responder's best ``k``
candidates (lean: no block, no proof) with their keyword statistics for the query ``terms``;
a ``fetch`` request the proofs of chosen CIDs (binary) among ``collections``.

The answer, by request::

    query -> {"v": 1, "t": "hits", "searched": [str, ...],
              "hits": [{"cid", "score", "relevance", "proof"}, ...]}          at most k hits
    pools -> {"v": 1, "t": "pools", "searched": [str, ...],
              "stats": {"docs", "length", "df"}, "entries": [[...], ...]}   at most k a pool
    fetch -> {"v": 1, "t": "proofs", "proofs": [{"cid", "proof"}, ...]}      asked CIDs only
    any   -> {"v": 1, "t": "error", "code": str, "message": str}

(``searched``: the asked collections the responder holds and searched; ``proof`` in the
``node.proofs.hit_proof_json`` form.)

Invariant: a decoded request or answer has passed every bound here and in ``p2p.pools_wire``
(sizes, counts, types, names); an answer of another type than its request's (``hits`` to a
``pools`` request) is malformed; anything malformed raises ``InvalidEnvelope`` and is an
offence of the sender. What only the node can judge (the model, the proofs, the stated
numbers) is judged there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from node.errors import InvalidFilter, InvalidInput
from node.facts import check_collection
from node.filters import parse_filter
from node.limits import (
    MAX_K,
    MAX_POOL_DEPTH,
    MAX_QUERY_BYTES,
    MAX_QUERY_COLLECTIONS,
    MAX_VECTOR_COMPONENTS,
)
from node.ports import (
    FetchAnswer,
    FetchQuery,
    PeerAnswer,
    PeerRequest,
    PoolsAnswer,
    PoolsQuery,
    RemoteAnswer,
    RemoteHit,
    RemoteQuery,
)
from node.search import SearchMode
from p2p.pools_wire import (
    decode_cids,
    decode_entries,
    decode_proofs,
    decode_stats,
    decode_terms,
    encode_cids,
    encode_entries,
    encode_proofs,
    encode_stats,
    encode_terms,
)
from p2p.wire import MAX_WIRE_CID_CHARS, InvalidEnvelope, is_number

VERSION = 1
#: A request frame larger than this is refused unread (text, vector and names fit in far less).
MAX_REQUEST_BYTES = 64 * 1024
#: An answer frame larger than this is refused (k hits of at most ~20 KiB each).
MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_ERROR_CHARS = 200
#: Error codes a responder sends.
ERROR_CODES = frozenset({"busy", "model_mismatch", "not_held", "invalid", "unavailable"})

_REQUEST_KEYS = frozenset(
    {"v", "t", "text", "vector", "model", "k", "mode", "collections", "filter", "superseded"}
)
_POOLS_KEYS = _REQUEST_KEYS | {"terms"}
_FETCH_KEYS = frozenset({"v", "t", "cids", "collections"})
_HIT_KEYS = frozenset({"cid", "score", "relevance", "proof"})
_POOLS_ANSWER_KEYS = frozenset({"v", "t", "searched", "stats", "entries"})


def encode_request(request: PeerRequest) -> dict[str, Any]:
    if isinstance(request, PoolsQuery):
        terms = encode_terms(request.terms)
        return {**_query_map(request.query), "t": "pools", "terms": terms}
    if isinstance(request, FetchQuery):
        cids, names = encode_cids(request.cids), list(request.collections)
        return {"v": VERSION, "t": "fetch", "cids": cids, "collections": names}
    return _query_map(request)


def _query_map(query: RemoteQuery) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "v": VERSION,
        "t": "query",
        "text": query.text,
        "vector": np.asarray(query.vector, dtype="<f4").tobytes(),
        "model": query.model_cid,
        "k": query.k,
        "mode": query.mode.value,
        "collections": list(query.collections),
    }
    if query.filter is not None:
        msg["filter"] = query.filter.to_json()
    if query.include_superseded:
        msg["superseded"] = True
    return msg


def decode_request(msg: Mapping[str, Any]) -> PeerRequest:
    """A request, every field checked (``InvalidEnvelope`` naming the first fault)."""
    kind = msg.get("t")
    if msg.get("v") != VERSION or kind not in ("query", "pools", "fetch"):
        raise InvalidEnvelope(f"a request is a version {VERSION} query map (query, pools, fetch)")
    if kind == "fetch":
        _only_keys(msg, _FETCH_KEYS)
        return FetchQuery(decode_cids(msg.get("cids")), _collections(msg.get("collections")))
    if kind == "pools":
        query = _remote_query(msg, _POOLS_KEYS, MAX_POOL_DEPTH)
        return PoolsQuery(query, decode_terms(msg.get("terms")))
    return _remote_query(msg, _REQUEST_KEYS, MAX_K)


def _only_keys(msg: Mapping[str, Any], keys: frozenset[str]) -> None:
    extra = set(msg) - keys
    if extra:
        raise InvalidEnvelope(f"unknown request keys {sorted(map(str, extra))[:4]}")


def _remote_query(msg: Mapping[str, Any], keys: frozenset[str], max_k: int) -> RemoteQuery:
    """The query fields of a query or pools request, ``k`` at most ``max_k``."""
    _only_keys(msg, keys)
    text = msg.get("text")
    if not isinstance(text, str) or len(text.encode("utf-8", "surrogatepass")) > MAX_QUERY_BYTES:
        raise InvalidEnvelope(f"text must be a string of at most {MAX_QUERY_BYTES} bytes")
    vector = msg.get("vector")
    if (
        not isinstance(vector, bytes)
        or not vector
        or len(vector) % 4
        or len(vector) // 4 > MAX_VECTOR_COMPONENTS
    ):
        raise InvalidEnvelope(
            f"vector must be little-endian float32 bytes, 1-{MAX_VECTOR_COMPONENTS} of them"
        )
    values = np.frombuffer(vector, dtype="<f4").astype(np.float64)
    if not np.isfinite(values).all():
        raise InvalidEnvelope("vector must hold finite numbers")
    model = msg.get("model")
    if not isinstance(model, str) or not 0 < len(model) <= MAX_WIRE_CID_CHARS:
        raise InvalidEnvelope("model must be a CID string")
    k = msg.get("k")
    if type(k) is not int or not 1 <= k <= max_k:
        raise InvalidEnvelope(f"k must be an integer 1-{max_k}")
    raw_mode = msg.get("mode")
    if raw_mode not in set(SearchMode):
        raise InvalidEnvelope("mode must be dense, keyword or hybrid")
    mode = SearchMode(raw_mode)
    names = _collections(msg.get("collections"))
    try:
        query_filter = parse_filter(msg.get("filter"))
    except InvalidFilter as exc:
        raise InvalidEnvelope(f"filter: {exc.message}") from exc
    superseded = msg.get("superseded", False)
    if not isinstance(superseded, bool):
        raise InvalidEnvelope("superseded must be a boolean")
    return RemoteQuery(
        text=text,
        vector=tuple(values.tolist()),
        model_cid=model,
        k=k,
        mode=mode,
        collections=names,
        filter=query_filter,
        include_superseded=superseded,
    )


def _collections(raw: Any) -> tuple[str, ...]:
    """The collections a request asks for: 1-``MAX_QUERY_COLLECTIONS`` valid names."""
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_QUERY_COLLECTIONS:
        raise InvalidEnvelope(f"collections must list 1-{MAX_QUERY_COLLECTIONS} names")
    try:
        return tuple(check_collection(c) for c in raw)
    except InvalidInput as exc:
        raise InvalidEnvelope(f"collections: {exc.message}") from exc


def encode_answer(answer: PeerAnswer) -> dict[str, Any]:
    if isinstance(answer, PoolsAnswer):
        return {
            "v": VERSION,
            "t": "pools",
            "searched": list(answer.searched),
            "stats": encode_stats(answer.stats),
            "entries": encode_entries(answer.entries),
        }
    if isinstance(answer, FetchAnswer):
        return {"v": VERSION, "t": "proofs", "proofs": encode_proofs(answer.proofs)}
    return {
        "v": VERSION,
        "t": "hits",
        "searched": list(answer.searched),
        "hits": [
            {"cid": h.cid, "score": h.score, "relevance": h.relevance, "proof": dict(h.proof)}
            for h in answer.hits
        ],
    }


def encode_error(code: str, message: str) -> dict[str, Any]:
    assert code in ERROR_CODES, code
    return {"v": VERSION, "t": "error", "code": code, "message": message[:MAX_ERROR_CHARS]}


class RemoteError(Exception):
    """The peer answered with an error message (``code`` one of ``ERROR_CODES``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def decode_answer(msg: Mapping[str, Any], request: PeerRequest) -> PeerAnswer:
    """The answer to ``request``, of its type (``PeerRequest``), shapes and bounds checked;
    the proofs and stated numbers are checked by the node. ``RemoteError`` for an error
    answer, ``InvalidEnvelope`` for anything malformed (an answer of another type included)."""
    if msg.get("v") != VERSION:
        raise InvalidEnvelope(f"an answer is a version {VERSION} map")
    kind = msg.get("t")
    if kind == "error":
        code, message = msg.get("code"), msg.get("message")
        if code not in ERROR_CODES or not isinstance(message, str):
            raise InvalidEnvelope("an error answer has a known code and a message")
        raise RemoteError(str(code), message[:MAX_ERROR_CHARS])
    if isinstance(request, PoolsQuery):
        _answer_type(kind, "pools")
        if set(msg) != _POOLS_ANSWER_KEYS:
            raise InvalidEnvelope("a pools answer has exactly v, t, searched, stats and entries")
        n_terms = len(request.terms)
        searched = _searched(msg["searched"])
        if not searched:  # a responder holding none answers not_held
            raise InvalidEnvelope("a pools answer names at least one collection it searched")
        return PoolsAnswer(
            searched,
            decode_stats(msg["stats"], n_terms),
            decode_entries(msg["entries"], request.query.k, n_terms),
        )
    if isinstance(request, FetchQuery):
        _answer_type(kind, "proofs")
        if set(msg) != {"v", "t", "proofs"}:
            raise InvalidEnvelope("a proofs answer has exactly v, t and proofs")
        return FetchAnswer(decode_proofs(msg["proofs"], request.cids))
    return _hits_answer(msg, request.k)


def _answer_type(kind: Any, expected: str) -> None:
    if kind != expected:
        raise InvalidEnvelope(f"the answer must be {expected} or error, not {repr(kind)[:40]}")


def _hits_answer(msg: Mapping[str, Any], k: int) -> RemoteAnswer:
    hits = msg.get("hits")
    if msg.get("t") != "hits" or not isinstance(hits, list) or len(hits) > k:
        raise InvalidEnvelope(f"an answer is a list of at most k={k} hits")
    if set(msg) != {"v", "t", "searched", "hits"}:
        raise InvalidEnvelope("a hits answer has exactly v, t, searched and hits")
    return RemoteAnswer(tuple(_hit(h) for h in hits), _searched(msg["searched"]))


def _searched(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_QUERY_COLLECTIONS:
        raise InvalidEnvelope(f"searched lists at most {MAX_QUERY_COLLECTIONS} names")
    try:
        return tuple(check_collection(c, "searched") for c in raw)
    except InvalidInput as exc:
        raise InvalidEnvelope(f"searched: {exc.message}") from exc


def _hit(raw: Any) -> RemoteHit:
    if not isinstance(raw, dict) or set(raw) != _HIT_KEYS:
        raise InvalidEnvelope(f"a hit is a map of exactly {sorted(_HIT_KEYS)}")
    cid, score, relevance, proof = raw["cid"], raw["score"], raw["relevance"], raw["proof"]
    if not isinstance(cid, str) or len(cid) > MAX_WIRE_CID_CHARS:
        raise InvalidEnvelope("a hit's cid is a CID string")
    if not is_number(score) or not (relevance is None or is_number(relevance)):
        raise InvalidEnvelope("a hit's score and relevance are finite numbers")
    if not isinstance(proof, dict) or not all(isinstance(key, str) for key in proof):
        raise InvalidEnvelope("a hit's proof is a map")
    return RemoteHit(cid, float(score), None if relevance is None else float(relevance), proof)
