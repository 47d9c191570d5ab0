"""Write docs/vectors/directory.json: test vectors for peer-directory adverts (p2p/directory.py).

    .venv/bin/python scripts/make_directory_vectors.py [--check]

Valid adverts with their exact canonical DAG-CBOR bytes, and invalid ones (bytes and the
reason a receiver must reject them: docs/protocol.md, section 3.4). ``--check`` fails when the
committed file differs from what the code produces now (a unit test runs it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dag_cbor  # noqa: E402
from _vectors import write_or_check  # noqa: E402

from node.model_identity import bare_description, model_cid  # noqa: E402
from node.ports import CollectionAdvert  # noqa: E402
from p2p.directory import MAX_ADVERT_BYTES, MAX_COLLECTIONS, Advert, encode_advert  # noqa: E402
from p2p.reconcile import ItemSet  # noqa: E402

OUT = ROOT / "docs" / "vectors" / "directory.json"
MODEL = model_cid(bare_description("example-model", 384))


def _digest(*items: bytes) -> str:
    return ItemSet(list(items)).digest()


def _advert(name: str, about: str, advert: Advert) -> dict[str, Any]:
    return {
        "name": name,
        "about": about,
        "model": advert.model_cid,
        "all": advert.holds_all,
        "collections": {
            n: {"facts": c.facts, "digest": c.digest} for n, c in advert.collections.items()
        },
        "bytes": encode_advert(advert).hex(),
    }


def _map(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": 1,
        "model": MODEL,
        "all": False,
        "collections": {"medicine": {"facts": 2, "digest": bytes(16)}},
    }
    base.update(changes)
    return base


def _invalid(name: str, reason: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "reason": reason, "bytes": data.hex()}


def vectors() -> dict[str, Any]:
    medicine = CollectionAdvert(facts=2, digest=_digest(b"\x01" * 36, b"\x02" * 36))
    law = CollectionAdvert(facts=1, digest=_digest(b"\x03" * 36))
    valid = [
        _advert(
            "partial",
            "a node holding medicine and law",
            Advert(MODEL, False, {"law": law, "medicine": medicine}),
        ),
        _advert(
            "everything_empty",
            "a node holding every collection, no facts yet",
            Advert(MODEL, True, {}),
        ),
    ]
    good = dag_cbor.encode(_map())
    many = {f"c{i}": {"facts": 1, "digest": bytes(16)} for i in range(MAX_COLLECTIONS + 1)}
    invalid = [
        _invalid("not_cbor", "not DAG-CBOR", b"\xff\x00"),
        _invalid("version_2", "v must be the integer 1", dag_cbor.encode(_map(v=2))),
        _invalid("version_float", "v must be the integer 1", dag_cbor.encode(_map(v=1.0))),
        _invalid(
            "extra_key",
            "exactly v, model, all, collections",
            dag_cbor.encode(_map(peer="12D3KooW")),
        ),
        _invalid("model_not_cid", "model must be a CID", dag_cbor.encode(_map(model="hello"))),
        _invalid("all_not_bool", "all must be a boolean", dag_cbor.encode(_map(all=1))),
        _invalid(
            "bad_name",
            "collection names are [a-z0-9][a-z0-9._-]*",
            dag_cbor.encode(_map(collections={"Bad Name": {"facts": 1, "digest": bytes(16)}})),
        ),
        _invalid(
            "negative_count",
            "facts is a non-negative integer",
            dag_cbor.encode(_map(collections={"a": {"facts": -1, "digest": bytes(16)}})),
        ),
        _invalid(
            "short_digest",
            "digest is 16 bytes",
            dag_cbor.encode(_map(collections={"a": {"facts": 1, "digest": bytes(8)}})),
        ),
        _invalid(
            "too_many",
            f"at most {MAX_COLLECTIONS} collections",
            dag_cbor.encode(_map(collections=many)),
        ),
        _invalid("oversized", f"at most {MAX_ADVERT_BYTES} bytes", good + bytes(MAX_ADVERT_BYTES)),
        _invalid("not_canonical", "keys out of canonical order", _reordered(good)),
    ]
    return {
        "about": "Peer directory adverts on /knowhub/directory/1 (docs/protocol.md 3.4)",
        "valid": valid,
        "invalid": invalid,
    }


def _reordered(good: bytes) -> bytes:
    """The valid map with its keys in non-canonical (longest first) order, by hand."""
    head = bytes([0xA4])  # map of 4
    parts = [
        dag_cbor.encode("collections") + dag_cbor.encode(_map()["collections"]),
        dag_cbor.encode("model") + dag_cbor.encode(MODEL),
        dag_cbor.encode("all") + dag_cbor.encode(False),
        dag_cbor.encode("v") + dag_cbor.encode(1),
    ]
    return head + b"".join(parts)


def main() -> int:
    return write_or_check(OUT, vectors, "make_directory_vectors.py")


if __name__ == "__main__":
    sys.exit(main())
