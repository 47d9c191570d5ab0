"""The messages of ``/knowhub/query/1`` (federated query, docs/protocol.md section 6c): pure
encode and strict decode, test-vectored in ``docs/vectors/query.json``.

A request is one DAG-CBOR map::

    {"v": 1, "t": "query", "text": str, "vector": bytes, "model": str, "k": int,
     "mode": "dense" | "keyword" | "hybrid", "collections": [str, ...],
     "filter"?: {key: {"$in": [scalar, ...]}}, "superseded"?: bool}

``vector`` is the asking node's unit query embedding as little-endian float32, made by the
model whose CID is ``model``. The answer is ``{"v": 1, "t": "hits", "searched": [str, ...],
"hits": [{"cid", "score", "relevance", "proof"}]}`` (``searched``: the asked collections the
responder holds and searched; ``proof`` in the ``node.proofs.hit_proof_json`` form) or
``{"v": 1, "t": "error", "code": str, "message": str}``.

Invariant: a decoded request or answer has passed every bound here (sizes, counts, types,
names); anything else raises ``InvalidEnvelope`` and is an offence of the sender. What only
the node can judge (the model, the proofs) is judged there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from node.errors import InvalidFilter, InvalidInput
from node.facts import check_collection
from node.filters import parse_filter
from node.limits import MAX_K, MAX_QUERY_BYTES, MAX_QUERY_COLLECTIONS, MAX_VECTOR_COMPONENTS
from node.ports import RemoteAnswer, RemoteHit, RemoteQuery
from node.search import SearchMode
from p2p.wire import MAX_WIRE_CID_CHARS, InvalidEnvelope

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
_HIT_KEYS = frozenset({"cid", "score", "relevance", "proof"})


def encode_request(query: RemoteQuery) -> dict[str, Any]:
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


def decode_request(msg: Mapping[str, Any]) -> RemoteQuery:
    """A request's query, every field checked (``InvalidEnvelope`` naming the first fault)."""
    if msg.get("v") != VERSION or msg.get("t") != "query":
        raise InvalidEnvelope(f"a request is a version {VERSION} query map")
    extra = set(msg) - _REQUEST_KEYS
    if extra:
        raise InvalidEnvelope(f"unknown request keys {sorted(map(str, extra))[:4]}")
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
    if type(k) is not int or not 1 <= k <= MAX_K:
        raise InvalidEnvelope(f"k must be an integer 1-{MAX_K}")
    raw_mode = msg.get("mode")
    if raw_mode not in set(SearchMode):
        raise InvalidEnvelope("mode must be dense, keyword or hybrid")
    mode = SearchMode(raw_mode)
    collections = msg.get("collections")
    if not isinstance(collections, list) or not 0 < len(collections) <= MAX_QUERY_COLLECTIONS:
        raise InvalidEnvelope(f"collections must list 1-{MAX_QUERY_COLLECTIONS} names")
    try:
        names = tuple(check_collection(c) for c in collections)
        query_filter = parse_filter(msg.get("filter"))
    except InvalidFilter as exc:
        raise InvalidEnvelope(f"filter: {exc.message}") from exc
    except InvalidInput as exc:
        raise InvalidEnvelope(f"collections: {exc.message}") from exc
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


def encode_answer(answer: RemoteAnswer) -> dict[str, Any]:
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


def decode_answer(msg: Mapping[str, Any], k: int) -> RemoteAnswer:
    """An answer's hits (at most ``k``), shapes checked; the proofs are checked by the node.
    ``RemoteError`` for an error answer, ``InvalidEnvelope`` for anything malformed."""
    if msg.get("v") != VERSION:
        raise InvalidEnvelope(f"an answer is a version {VERSION} map")
    if msg.get("t") == "error":
        code, message = msg.get("code"), msg.get("message")
        if code not in ERROR_CODES or not isinstance(message, str):
            raise InvalidEnvelope("an error answer has a known code and a message")
        raise RemoteError(str(code), message[:MAX_ERROR_CHARS])
    hits = msg.get("hits")
    if msg.get("t") != "hits" or not isinstance(hits, list) or len(hits) > k:
        raise InvalidEnvelope(f"an answer is a list of at most k={k} hits")
    if set(msg) != {"v", "t", "searched", "hits"}:
        raise InvalidEnvelope("a hits answer has exactly v, t, searched and hits")
    searched = msg["searched"]
    if not isinstance(searched, list) or len(searched) > MAX_QUERY_COLLECTIONS:
        raise InvalidEnvelope(f"searched lists at most {MAX_QUERY_COLLECTIONS} names")
    try:
        names = tuple(check_collection(c, "searched") for c in searched)
    except InvalidInput as exc:
        raise InvalidEnvelope(f"searched: {exc.message}") from exc
    return RemoteAnswer(tuple(_hit(h) for h in hits), names)


def _hit(raw: Any) -> RemoteHit:
    if not isinstance(raw, dict) or set(raw) != _HIT_KEYS:
        raise InvalidEnvelope(f"a hit is a map of exactly {sorted(_HIT_KEYS)}")
    cid, score, relevance, proof = raw["cid"], raw["score"], raw["relevance"], raw["proof"]
    if not isinstance(cid, str) or len(cid) > MAX_WIRE_CID_CHARS:
        raise InvalidEnvelope("a hit's cid is a CID string")
    if not _finite(score) or not (relevance is None or _finite(relevance)):
        raise InvalidEnvelope("a hit's score and relevance are finite numbers")
    if not isinstance(proof, dict) or not all(isinstance(key, str) for key in proof):
        raise InvalidEnvelope("a hit's proof is a map")
    return RemoteHit(cid, float(score), None if relevance is None else float(relevance), proof)


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)
