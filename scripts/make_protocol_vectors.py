"""Write docs/vectors/p2p.json: test vectors for docs/protocol.md, from fixed keys and texts.

    .venv/bin/python scripts/make_protocol_vectors.py [--check]

``--check`` fails when the committed file differs from what the code produces now (a unit
test runs it), so the document and the implementation cannot drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dag_cbor  # noqa: E402
from _vectors import write_or_check  # noqa: E402
from multiformats import CID  # noqa: E402

from node.attestation import make_attestation  # noqa: E402
from node.facts import make_fact  # noqa: E402
from node.manifest import build_manifest  # noqa: E402
from node.signing import SigningKey  # noqa: E402
from node.tombstone import make_tombstone  # noqa: E402
from p2p.reconcile import ItemSet, initial_request, respond  # noqa: E402
from p2p.sync import encode_message  # noqa: E402
from p2p.wire import AnchorNotice, RawRecord, encode_anchor_notice, encode_envelope  # noqa: E402

OUT = ROOT / "docs" / "vectors" / "p2p.json"
#: anvil's second default account: a public test key, never use it for anything real
KEY = SigningKey(bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"))
OTHER = SigningKey(
    bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")
)


def vectors() -> dict[str, object]:
    facts = [
        make_fact("Water boils at 100 degrees Celsius at sea level.", {"lang": "en"}, KEY.address),
        make_fact("The Danube flows through ten countries.", {"tags": ["geo"]}, KEY.address),
    ]
    records = [RawRecord(f.block, bytes.fromhex(KEY.sign_cid(f.cid)[2:])) for f in facts]
    forged = RawRecord(facts[0].block, bytes.fromhex(OTHER.sign_cid(facts[0].cid)[2:]))
    moved = RawRecord(facts[1].block, records[0].signature)
    corrected = make_fact(
        "Water boils at 99.97 degrees Celsius at one standard atmosphere.",
        {"lang": "en"},
        KEY.address,
        facts[0].cid,
    )
    in_collection = make_fact(
        "Aspirin irreversibly inhibits cyclooxygenase.",
        {"lang": "en"},
        KEY.address,
        collection="medicine",
    )
    tombstone = make_tombstone(facts[1].cid, KEY.address, "duplicate of another fact")
    tomb_sig = KEY.sign_cid(tombstone.cid)
    tomb_raw = RawRecord(tombstone.block, bytes.fromhex(tomb_sig[2:]))
    by_other = make_tombstone(facts[1].cid, OTHER.address)
    batch, _ = build_manifest([facts[0].cid, tombstone.cid], {tombstone.cid: "tombstone"})
    in_leaf = [facts[0].cid, in_collection.cid, tombstone.cid]
    named, _ = build_manifest(
        in_leaf, {tombstone.cid: "tombstone"}, {in_collection.cid: "medicine"}
    )
    endorsement = make_attestation(facts[0].cid, "endorse", OTHER.address, 1767225600)
    endorse_sig = OTHER.sign_cid(endorsement.cid)
    endorse_raw = RawRecord(endorsement.block, bytes.fromhex(endorse_sig[2:]))
    items = ItemSet([bytes(CID.decode(f.cid)) for f in facts])
    request = initial_request(ItemSet([bytes(CID.decode(facts[0].cid))]))
    return {
        "signer": {"private_key": "0x" + KEY.private_key.hex(), "address": KEY.address},
        "facts": [
            {
                "record": f.record(),
                "block": f.block.hex(),
                "cid": f.cid,
                "cid_bytes": bytes(CID.decode(f.cid)).hex(),
                "signature": KEY.sign_cid(f.cid),
            }
            for f in facts
        ],
        "envelope": {"facts": [f.cid for f in facts], "bytes": encode_envelope(records).hex()},
        "superseding_fact": {
            "record": corrected.record(),
            "block": corrected.block.hex(),
            "cid": corrected.cid,
            "signature": KEY.sign_cid(corrected.cid),
        },
        "collection_fact": {
            "record": in_collection.record(),
            "block": in_collection.block.hex(),
            "cid": in_collection.cid,
            "signature": KEY.sign_cid(in_collection.cid),
            # a batch manifest leaf naming each entry's collection (null: not a fact)
            "batch_manifest_with_collections": {"block": named.data.hex(), "cid": str(named.cid)},
        },
        "invalid_collection_facts": [
            {
                "why": why,
                "block": dag_cbor.encode({**facts[0].record(), "v": 2, "collection": value}).hex(),
            }
            for why, value in [
                ("the default collection spelled out (never written)", "default"),
                ("empty name", ""),
                ("upper case", "Medicine"),
                ("65 characters", "a" * 65),
                ("not a string", 7),
                ("starts with a dot", ".medicine"),
                ("a space", "my medicine"),
            ]
        ]
        + [
            {
                "why": "a collection in a version-1 record",
                "block": dag_cbor.encode({**facts[0].record(), "collection": "medicine"}).hex(),
            }
        ],
        "tombstone": {
            "record": tombstone.record(),
            "block": tombstone.block.hex(),
            "cid": tombstone.cid,
            "signature": tomb_sig,
            "revokes": facts[1].cid,
            "envelope": encode_envelope([records[0], tomb_raw]).hex(),
            "batch_manifest_with_kinds": {"block": batch.data.hex(), "cid": str(batch.cid)},
        },
        "invalid_tombstones": [
            {
                "why": "the fact's contributor is KEY, the tombstone is signed by OTHER (valid "
                "as a record; refused by a node that holds the fact, and its sender penalised)",
                "block": by_other.block.hex(),
                "signature": OTHER.sign_cid(by_other.cid),
            },
            {
                "why": "revokes is an IPLD link, not a CID string",
                "block": dag_cbor.encode(
                    {**tombstone.record(), "revokes": CID.decode(facts[1].cid)}
                ).hex(),
            },
            {
                "why": "unknown key",
                "block": dag_cbor.encode({**tombstone.record(), "extra": 1}).hex(),
            },
            {
                "why": "a fact record may not carry a kind key",
                "block": dag_cbor.encode({**facts[0].record(), "kind": "fact"}).hex(),
            },
            {
                "why": "unknown kind",
                "block": dag_cbor.encode({**tombstone.record(), "kind": "retraction"}).hex(),
            },
            {
                "why": "empty reason",
                "block": dag_cbor.encode({**tombstone.record(), "reason": ""}).hex(),
            },
        ],
        "attestation": {
            "record": endorsement.record(),
            "block": endorsement.block.hex(),
            "cid": endorsement.cid,
            "signature": endorse_sig,
            "signer": {"private_key": "0x" + OTHER.private_key.hex(), "address": OTHER.address},
            "about": facts[0].cid,
            "envelope": encode_envelope([records[0], endorse_raw]).hex(),
        },
        "invalid_attestations": [
            {
                "why": "about is an IPLD link, not a CID string",
                "block": dag_cbor.encode(
                    {**endorsement.record(), "about": CID.decode(facts[0].cid)}
                ).hex(),
            },
            {
                "why": "unknown verdict",
                "block": dag_cbor.encode({**endorsement.record(), "verdict": "like"}).hex(),
            },
            {
                "why": "at is missing",
                "block": dag_cbor.encode(
                    {k: v for k, v in endorsement.record().items() if k != "at"}
                ).hex(),
            },
            {
                "why": "at is negative",
                "block": dag_cbor.encode({**endorsement.record(), "at": -1}).hex(),
            },
            {
                "why": "at is over 2**53",
                "block": dag_cbor.encode({**endorsement.record(), "at": 2**53 + 1}).hex(),
            },
            {
                "why": "unknown key",
                "block": dag_cbor.encode({**endorsement.record(), "weight": 1}).hex(),
            },
        ],
        "invalid_envelopes": [
            {"why": "signature by another key", "bytes": encode_envelope([forged]).hex()},
            {"why": "signature of another fact", "bytes": encode_envelope([moved]).hex()},
            {"why": "same fact twice", "bytes": encode_envelope([records[0], records[0]]).hex()},
            {"why": "no facts", "bytes": encode_envelope([]).hex()},
        ],
        "anchor_notice": encode_anchor_notice(
            AnchorNotice(
                chain_id=31337,
                registry=bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"),
                root=bytes(range(32)),
                manifest_cid="bafyreiek5w4oskwh4gd65xe67n7l63lorozpzfi4nh5ht2s3d7uw7fa3om",
                tx_hash=bytes(range(32, 64)),
                block_number=42,
            )
        ).hex(),
        "reconcile": {
            "items": [i.hex() for i in items.items],
            "set_digest": items.digest(),
            "initial_request_of_first_fact_only": encode_message(request).hex(),
            "response_of_both": encode_message(respond(items, request)).hex(),
        },
    }


def main() -> int:
    return write_or_check(OUT, vectors, "make_protocol_vectors.py")


if __name__ == "__main__":
    raise SystemExit(main())
