"""Write docs/vectors/query.json: test vectors for the federated query protocol
(``/knowhub/query/1``: p2p/query_wire.py, node/federation.py; docs/protocol.md section 6c).

    .venv/bin/python scripts/make_query_vectors.py [--check]

- ``requests``: queries, each as its DAG-CBOR message (hex) and the framed bytes on the stream
  (unsigned varint length, then the message), with the fields a decoder must read back;
- ``invalid_requests``: messages (hex) a responder must refuse as malformed (an offence), with
  the reason;
- ``answers``: a hits answer and an error answer (hex), and ``invalid_answers``;
- ``hits``: one remote hit built from a real signed fact (fixed key), with the asking node's
  verdict when checked as sent ("pending": record and signature hold, not anchored), after
  each forgery or malformed proof a hostile peer might try ("failed", with the check that
  catches it), and without a relevance ("dropped": unverifiable, no fault);
- the two-phase messages (``scripts/_pools_vectors.py``): ``pools_requests``,
  ``invalid_pools_requests``, ``pools_answers``, ``invalid_pools_answers``, ``fetch_requests``,
  ``invalid_fetch_requests``, ``fetch_answers``, ``invalid_fetch_answers``; each answer case
  carries the request (hex) it answers.

``--check`` fails when the committed file differs from what the code produces (a unit test
runs it), so the document and the implementation cannot drift apart.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import dag_cbor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _pools_vectors import pools_vectors  # noqa: E402
from _vectors import write_or_check  # noqa: E402

from node.facts import make_fact  # noqa: E402
from node.federation import check_remote_hit  # noqa: E402
from node.filters import parse_filter  # noqa: E402
from node.ports import RemoteAnswer, RemoteHit, RemoteQuery  # noqa: E402
from node.search import SearchMode  # noqa: E402
from node.signing import SigningKey  # noqa: E402
from p2p.query_wire import encode_answer, encode_error, encode_request  # noqa: E402
from p2p.wire import encode_varint  # noqa: E402

OUT = ROOT / "docs" / "vectors" / "query.json"
KEY = SigningKey(bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"))
OTHER = SigningKey(
    bytes.fromhex("8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba")
)
MODEL = "bafyreies5s4bfxkrrqba6j277kqcy6lto7oc6ng6jkep4qae5fl7nc237i"
VECTOR = (0.6, 0.8, 0.0, 0.0)


def _hex(msg: dict[str, Any]) -> str:
    return dag_cbor.encode(msg).hex()


def _request(name: str, query: RemoteQuery) -> dict[str, Any]:
    data = dag_cbor.encode(encode_request(query))
    return {
        "name": name,
        "message": data.hex(),
        "framed": (encode_varint(len(data)) + data).hex(),
        "decoded": {
            "text": query.text,
            "vector": list(query.vector),
            "model": query.model_cid,
            "k": query.k,
            "mode": query.mode.value,
            "collections": list(query.collections),
            "filter": None if query.filter is None else query.filter.to_json(),
            "superseded": query.include_superseded,
        },
    }


def _base() -> dict[str, Any]:
    return encode_request(RemoteQuery("blood", VECTOR, MODEL, 5, SearchMode.HYBRID, ("medicine",)))


def _invalid(name: str, reason: str, **change: Any) -> dict[str, Any]:
    msg = {**_base(), **change}
    for key in [k for k, v in change.items() if v is _DROP]:
        del msg[key]
    return {"name": name, "message": _hex(msg), "reason": reason}


_DROP = object()


def _hit() -> tuple[RemoteHit, dict[str, Any]]:
    fact = make_fact(
        "Blood carries oxygen.", {"topic": "blood"}, KEY.address, collection="medicine"
    )
    proof: dict[str, Any] = {
        "block": base64.b64encode(fact.block).decode(),
        "signature": KEY.sign_cid(fact.cid),
        "status": "pending",
        "root": None,
        "merkle_proof": [],
        "anchor": None,
        "tombstone": None,
    }
    return RemoteHit(fact.cid, 0.0325, 0.71, proof), fact.record()


def _checked(name: str, hit: RemoteHit, about: str) -> dict[str, Any]:
    got = check_remote_hit(hit, ("medicine",), None, None)
    return {
        "name": name,
        "about": about,
        "hit": {
            "cid": hit.cid,
            "score": hit.score,
            "relevance": hit.relevance,
            "proof": dict(hit.proof),
        },
        "verdict": "dropped"
        if got is None
        else "failed"
        if isinstance(got, str)
        else got.check.verdict.value,
        "reason": got if isinstance(got, str) else None,
    }


def _hits() -> list[dict[str, Any]]:
    hit, record = _hit()
    forged_block = base64.b64encode(dag_cbor.encode({**record, "text": "Blood is green."})).decode()
    other = make_fact("Law fact.", None, KEY.address, collection="law")
    forged = OTHER.sign_cid(hit.cid)
    other_proof = {
        **hit.proof,
        "block": base64.b64encode(other.block).decode(),
        "signature": KEY.sign_cid(other.cid),
    }
    return [
        _checked("honest", hit, "as an honest peer sends it: pending (no anchor yet)"),
        _checked(
            "forged_text",
            RemoteHit(hit.cid, hit.score, hit.relevance, {**hit.proof, "block": forged_block}),
            "the block's text changed: it no longer hashes to the CID",
        ),
        _checked(
            "forged_signature",
            RemoteHit(
                hit.cid,
                hit.score,
                hit.relevance,
                {**hit.proof, "signature": forged},
            ),
            "signed by another key than the record's contributor",
        ),
        _checked(
            "other_collection",
            RemoteHit(other.cid, hit.score, hit.relevance, other_proof),
            "a valid fact of a collection the peer was not asked for",
        ),
        _checked(
            "no_relevance",
            RemoteHit(hit.cid, hit.score, None, hit.proof),
            "a hit that states no relevance cannot be checked: dropped, no fault of the peer",
        ),
        _checked(
            "unknown_status",
            RemoteHit(hit.cid, hit.score, hit.relevance, {**hit.proof, "status": "final"}),
            "a proof whose status is neither pending nor anchored",
        ),
        _checked(
            "extra_proof_key",
            RemoteHit(hit.cid, hit.score, hit.relevance, {**hit.proof, "note": "trust me"}),
            "a proof with a key the form does not have",
        ),
        _checked(
            "pending_with_a_root",
            RemoteHit(hit.cid, hit.score, hit.relevance, {**hit.proof, "root": "0x" + "zz" * 32}),
            "a pending proof that names a root (and not even a hex one)",
        ),
    ]


def vectors() -> dict[str, Any]:
    hit, _ = _hit()
    return {
        "about": "The federated query protocol /knowhub/query/1 (docs/protocol.md, section 6c): "
        "DAG-CBOR messages (hex); `framed` adds the unsigned varint length prefix. Vectors "
        "are little-endian float32.",
        "requests": [
            _request(
                "hybrid",
                RemoteQuery("blood", VECTOR, MODEL, 5, SearchMode.HYBRID, ("medicine",)),
            ),
            _request(
                "dense_filtered_superseded",
                RemoteQuery(
                    "oxygen",
                    VECTOR,
                    MODEL,
                    10,
                    SearchMode.DENSE,
                    ("law", "medicine"),
                    parse_filter({"topic": {"$in": ["blood", "lungs"]}}),
                    True,
                ),
            ),
        ],
        "invalid_requests": [
            _invalid("version", "a request is a version 1 query map", v=2),
            _invalid("unknown_key", "unknown request keys", extra=1),
            _invalid("no_text", "text must be a string", text=_DROP),
            _invalid(
                "odd_vector", "vector must be little-endian float32 bytes", vector=b"\x00" * 5
            ),
            _invalid(
                "nan_vector", "vector must hold finite numbers", vector=b"\x00\x00\xc0\x7f" * 4
            ),
            _invalid("k_zero", "k must be an integer", k=0),
            _invalid("k_bool", "k must be an integer", k=True),
            _invalid("mode", "mode must be dense, keyword or hybrid", mode="fuzzy"),
            _invalid("no_collections", "collections must list", collections=[]),
            _invalid("bad_collection", "collections:", collections=["Medicine"]),
            _invalid("too_many_collections", "collections must list", collections=["a"] * 33),
            _invalid("filter", "filter:", filter={"k": {"$gt": 1}}),
            _invalid("superseded", "superseded must be a boolean", superseded=1),
        ],
        "answers": [
            {
                "name": "hits",
                "k": 5,
                "message": _hex(encode_answer(RemoteAnswer((hit,), ("medicine",)))),
            },
            {
                "name": "error",
                "k": 5,
                "message": _hex(encode_error("model_mismatch", "this node's model is another")),
                "code": "model_mismatch",
            },
        ],
        "invalid_answers": [
            {
                "name": "more_hits_than_k",
                "k": 0,
                "message": _hex(encode_answer(RemoteAnswer((hit,)))),
                "reason": "at most k=0 hits",
            },
            {
                "name": "no_searched",
                "k": 5,
                "message": _hex({"v": 1, "t": "hits", "hits": []}),
                "reason": "exactly v, t, searched and hits",
            },
            {
                "name": "searched_bad_name",
                "k": 5,
                "message": _hex({"v": 1, "t": "hits", "searched": ["Medicine"], "hits": []}),
                "reason": "searched:",
            },
            {
                "name": "unknown_error_code",
                "k": 5,
                "message": _hex({"v": 1, "t": "error", "code": "teapot", "message": "x"}),
                "reason": "known code",
            },
            {
                "name": "hit_missing_relevance_key",
                "k": 5,
                "message": _hex(
                    {
                        "v": 1,
                        "t": "hits",
                        "searched": ["medicine"],
                        "hits": [{"cid": hit.cid, "score": 1.0, "proof": {}}],
                    }
                ),
                "reason": "a hit is a map of exactly",
            },
        ],
        "hits": _hits(),
        **pools_vectors(KEY, MODEL, VECTOR, hit),
    }


if __name__ == "__main__":
    sys.exit(write_or_check(OUT, vectors, "make_query_vectors.py"))
