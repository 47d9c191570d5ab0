"""Write tests/web/verify_vectors.json: what the page's in-browser checks (api/static/verify.js)
must agree with, computed by the node's own Python code (node.facts, node.signing, node.cid,
node.merkle).

Deterministic (fixed keys, fixed facts; libsecp256k1 signs with RFC 6979), so the file is
committed and only regenerated when the record layout changes:

    .venv/bin/python tests/web/make_verify_vectors.py [OUTPUT]

(tests/integration/test_web.py writes a fresh copy elsewhere and compares.)
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import dag_cbor
from eth_hash.auto import keccak

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from node.cid import cid_to_bytes, dag_cbor_cid  # noqa: E402
from node.facts import make_fact  # noqa: E402
from node.merkle import build_tree  # noqa: E402
from node.signing import SigningKey, personal_message_hash, recover_signer  # noqa: E402

OUT = Path(__file__).with_name("verify_vectors.json")
#: Fixed test keys (never used for anything real).
KEY = SigningKey(bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"))
OTHER_KEY = SigningKey(bytes(31) + b"\x07")
SAFE = 2**53 - 1


def tagged(value: Any) -> Any:
    """JSON for a decoded DAG-CBOR value: integers beyond 2**53 as {"$bigint": "..."}, byte
    strings as {"$bytes": hex} (what the JS test turns back into BigInt and Uint8Array)."""
    if isinstance(value, bool) or value is None or isinstance(value, float | str):
        return value
    if isinstance(value, int):
        return value if -SAFE <= value <= SAFE else {"$bigint": str(value)}
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, list | tuple):
        return [tagged(v) for v in value]
    if isinstance(value, dict):
        return {k: tagged(v) for k, v in value.items()}
    raise TypeError(type(value))


def fact_vectors() -> list[dict[str, Any]]:
    first = make_fact(
        "The octopus has three hearts.", {"source": "test", "year": 2021}, KEY.address
    )
    submissions: list[tuple[str, dict[str, Any], str | None]] = [
        ("The octopus has three hearts.", {"source": "test", "year": 2021}, None),
        (
            "Der Kākāpō ist ein flugunfähiger Papagei 🦜 — 日本語も OK. "
            "Zero-width joiner: 👩\u200d🔬, combining: é.",
            {"lang": "de", "tags": ["vögel", "🦜", ""], "Ünïcödé key": "wert"},
            None,
        ),
        (
            "Integers, booleans and lists in metadata. " + "Long text. " * 40,
            {
                "a": 0,
                "bb": -1,
                "ccc": 23,
                "d": 24,
                "e": -25,
                "f": 255,
                "g": 256,
                "h": 65535,
                "i": 65536,
                "j": 4294967295,
                "k": 4294967296,
                "max": 2**63 - 1,
                "min": -(2**63),
                "safe": 2**53 - 1,
                "yes": True,
                "no": False,
                "empty": [],
                "list": ["x", "y", "<b>&"],
                "z" * 128: "longest key",
            },
            None,
        ),
        ("A correction of the octopus fact: still three hearts.", {}, first.cid),
    ]
    facts = [make_fact(text, meta, KEY.address, sup) for text, meta, sup in submissions]
    tree = build_tree([cid_to_bytes(f.cid) for f in facts])
    out = []
    for fact in facts:
        signature = KEY.sign_cid(fact.cid)
        assert recover_signer(fact.cid, signature) == KEY.address
        record = dag_cbor.decode(fact.block)
        out.append(
            {
                "cid": fact.cid,
                "block": base64.b64encode(fact.block).decode("ascii"),
                "signature": signature,
                "signer": KEY.address,
                "message_hash": "0x" + personal_message_hash(fact.cid).hex(),
                "record": tagged(record),
                # the hit as the node serves it (JSON: integers beyond 2**53 lose precision)
                "hit": {
                    "cid": fact.cid,
                    "text": fact.text,
                    "metadata": fact.record()["metadata"],
                    "contributor": fact.contributor,
                },
                "root": "0x" + tree.root.hex(),
                "merkle_proof": ["0x" + h.hex() for h in tree.proof(cid_to_bytes(fact.cid))],
            }
        )
    return out


def cbor_vectors() -> list[dict[str, Any]]:
    """DAG-CBOR beyond fact records: floats, null, nesting, bytes, 64-bit integers."""
    values: list[Any] = [
        {"f": 1.5, "neg": -0.0, "pi": 3.141592653589793, "n": None, "t": True},
        {"nested": {"a": [1, {"b": [None, False, "ü"]}], "": {}}},
        {"bytes": b"\x00\x01\xfe\xff", "big": 2**64 - 1, "negbig": -(2**64)},
        [1e300, -1e-300, 0.1, [], [[[]]]],
        "just a string",
        -(2**63) - 1,
    ]
    return [{"hex": dag_cbor.encode(v).hex(), "value": tagged(v)} for v in values]


def keccak_vectors() -> list[dict[str, str]]:
    inputs = [b"", b"abc", bytes(range(135)), bytes(range(136)), bytes(range(137))]
    inputs += [bytes(i % 251 for i in range(300)), "Grüße 🦜".encode()]
    return [{"input": data.hex(), "hash": bytes(keccak(data)).hex()} for data in inputs]


def main(out: Path) -> None:
    facts = fact_vectors()
    for fact in facts:
        assert dag_cbor_cid(base64.b64decode(fact["block"])) == fact["cid"]
    vectors = {
        "comment": "Generated by tests/web/make_verify_vectors.py from the node's Python code.",
        "signer": KEY.address,
        "other_signer": OTHER_KEY.address,
        "facts": facts,
        # the first fact's CID signed by another key: a valid signature, the wrong signer
        "other_signature": OTHER_KEY.sign_cid(facts[0]["cid"]),
        "cbor": cbor_vectors(),
        "keccak": keccak_vectors(),
    }
    out.write_text(json.dumps(vectors, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(facts)} facts")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
