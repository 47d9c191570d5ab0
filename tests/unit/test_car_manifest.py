from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import dag_cbor
import pytest
from multiformats import CID, multihash

from node import manifest as manifest_module
from node.car import CarStream, InvalidCar, read_car, write_car
from node.cid import cid_for, dag_cbor_cid, raw_cid
from node.content import load_car
from node.facts import Fact, make_fact
from node.manifest import (
    InvalidManifest,
    build_manifest,
    build_snapshot_manifest,
    links,
    parse_manifest,
    read_manifest,
)
from node.signing import SigningKey


def car_bytes(roots: list[CID], blocks: list[tuple[CID, bytes]]) -> bytes:
    return b"".join(write_car(roots, blocks))


def test_car_round_trip_and_header() -> None:
    facts = [make_fact(f"fact {i}") for i in range(3)]
    blocks = [(CID.decode(f.cid), f.block) for f in facts]
    data = car_bytes([blocks[0][0]], blocks)
    roots, it = read_car(io.BytesIO(data))
    assert roots == [blocks[0][0]]
    assert list(it) == blocks
    # header is DAG-CBOR {"roots": [...], "version": 1} behind a varint length
    header = dag_cbor.decode(data[1 : 1 + data[0]])
    assert header == {"roots": [blocks[0][0]], "version": 1}


def test_every_corrupted_block_byte_is_detected() -> None:
    fact = make_fact("a fact whose bytes will be flipped")
    data = car_bytes([CID.decode(fact.cid)], [(CID.decode(fact.cid), fact.block)])
    block_start = len(data) - len(fact.block)
    for pos in range(block_start, len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        _, it = read_car(io.BytesIO(bytes(bad)))
        with pytest.raises(InvalidCar, match="does not match its CID"):
            list(it)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x05abc",
        b"\x01\xff",
        dag_cbor.encode({"roots": [], "version": 2}),
        b"\x0a" + dag_cbor.encode({"version": 1})[:10],
    ],
)
def test_bad_headers(data: bytes) -> None:
    with pytest.raises(InvalidCar):
        _roots, it = read_car(io.BytesIO(data))
        list(it)


def test_truncated_car() -> None:
    fact = make_fact("truncate me")
    data = car_bytes([CID.decode(fact.cid)], [(CID.decode(fact.cid), fact.block)])
    _, it = read_car(io.BytesIO(data[:-3]))
    with pytest.raises(InvalidCar, match="ends inside"):
        list(it)


def test_manifest_is_deterministic_and_links_every_fact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_module, "LEAF_SIZE", 3)
    monkeypatch.setattr(manifest_module, "FANOUT", 2)
    cids = [make_fact(f"fact {i}").cid for i in range(10)]
    root, blocks = build_manifest(cids)
    again, _ = build_manifest(list(reversed(cids)) + cids[:2])  # order and repeats don't matter
    assert again.cid == root.cid
    assert blocks[-1] == root
    # walk the tree: every fact exactly once
    by_cid = {b.cid: b.data for b in blocks}
    found: list[str] = []
    stack = [root.cid]
    while stack:
        children, facts = parse_manifest(by_cid[stack.pop()])
        stack += children
        found += [str(f.set(base="base32")) for f in facts]
    assert sorted(found) == sorted(cids)
    decoded: Any = dag_cbor.decode(root.data)
    assert decoded["count"] == 10
    assert set(links(root.data, "dag-cbor")) <= set(by_cid)
    assert build_manifest([])[0].cid == build_manifest([])[0].cid


def test_batch_manifest_bytes_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    # anchored batch manifests' CIDs are on chain: their bytes must never change
    cids = [make_fact(f"batch fact {i}").cid for i in range(7)]
    assert str(build_manifest(cids)[0].cid) == (
        "bafyreic2cw6ccs5n4lmgc5bi4ymlo77ox6ju262sct4sjairohrlthrubq"
    )
    assert str(build_manifest([])[0].cid) == (
        "bafyreihri3t2qhif4ymsmfyyzgzuraczwvvlziv4i4o6ylaf5l7dufsaxu"
    )
    monkeypatch.setattr(manifest_module, "LEAF_SIZE", 3)
    monkeypatch.setattr(manifest_module, "FANOUT", 2)
    assert str(build_manifest(cids)[0].cid) == (
        "bafyreiagp2g44nlf4zcnsmch4ff2pb4i35p526nmomnjrg3e6harqrf6ey"
    )


def test_snapshot_manifest_carries_signatures_and_is_deterministic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(manifest_module, "LEAF_SIZE", 3)
    monkeypatch.setattr(manifest_module, "FANOUT", 2)
    facts = [signed_fact(ALICE, f"signed fact {i}") for i in range(8)]
    pairs = [(f.cid, sig) for f, sig in facts]
    root, blocks = build_snapshot_manifest(pairs)
    assert build_snapshot_manifest(list(reversed(pairs)))[0].cid == root.cid
    assert root.cid != build_manifest([c for c, _ in pairs])[0].cid  # never a batch manifest
    by_cid = {b.cid: b.data for b in blocks}
    found: dict[str, bytes] = {}
    stack = [root.cid]
    while stack:
        node = read_manifest(by_cid[stack.pop()])
        stack += node.children
        if not node.children:
            assert node.signatures is not None and len(node.signatures) == len(node.facts)
            found.update(
                (str(f.set(base="base32")), s)
                for f, s in zip(node.facts, node.signatures, strict=True)
            )
    assert found == dict(pairs)
    assert read_manifest(by_cid[root.cid]).count == 8


def test_parse_manifest_rejects_other_objects() -> None:
    link = CID.decode(make_fact("x").cid)
    base = {"v": 1, "type": "knowhub/manifest", "count": 1, "facts": [link]}
    objects: list[Any] = [
        {"v": 1},
        {"v": 1, "type": "other"},
        [1, 2],
        {"v": 1, "type": "knowhub/manifest", "count": 1, "facts": ["not-a-link"]},
        {**base, "blob": b"\x00" * (1 << 20)},  # field sets are closed: no payload rides along
        {**base, "note": "hello"},
        {**base, "children": [link]},
        {**base, "v": True},
        {**base, "count": 2},  # a leaf's count is its number of facts
        {**base, "count": -1},
        {**base, "signatures": [b"\x01" * 64]},
        {**base, "signatures": []},
        {"v": 1, "type": "knowhub/manifest", "count": 1, "children": [link], "signatures": []},
    ]
    for obj in objects:
        with pytest.raises(InvalidManifest):
            parse_manifest(dag_cbor.encode(obj))
    with pytest.raises(InvalidManifest):
        parse_manifest(b"\xff")


ALICE = SigningKey(bytes.fromhex("11" * 32))
MALLORY = SigningKey(bytes.fromhex("22" * 32))


def signed_fact(key: SigningKey, text: str) -> tuple[Fact, bytes]:
    fact = make_fact(text, {"n": 1}, key.address)
    return fact, bytes.fromhex(key.sign_cid(fact.cid)[2:])


def snapshot_blocks(pairs: list[tuple[Fact, bytes]]) -> tuple[CID, list[tuple[CID, bytes]]]:
    root, manifests = build_snapshot_manifest([(f.cid, sig) for f, sig in pairs])
    blocks = [(b.cid, b.data) for b in manifests] + [(CID.decode(f.cid), f.block) for f, _ in pairs]
    return root.cid, blocks


def snapshot_file(tmp_path: Path, blocks: list[tuple[CID, bytes]], roots: list[CID]) -> Path:
    path = tmp_path / "snap.car"
    path.write_bytes(car_bytes(roots, blocks))
    return path


def test_load_car_accepts_a_complete_signed_snapshot(tmp_path: Path) -> None:
    pairs = [signed_fact(ALICE, f"snapshot fact {i}") for i in range(5)]
    root, blocks = snapshot_blocks(pairs)
    loaded = load_car(snapshot_file(tmp_path, blocks, [root]))
    assert loaded.roots == [root]
    assert {(s.cid, s.signature) for s in loaded.facts} == {
        (f.cid, "0x" + sig.hex()) for f, sig in pairs
    }
    assert [m.cid for m in loaded.manifests] == [root]
    with snapshot_file(tmp_path, blocks, [root]).open("rb") as fh:  # an open file works too
        assert load_car(fh).roots == [root]


def test_load_car_rejects_incomplete_or_foreign_snapshots(tmp_path: Path) -> None:
    pairs = [signed_fact(ALICE, f"snapshot fact {i}") for i in range(3)]
    root, blocks = snapshot_blocks(pairs)
    manifest_blocks, fact_blocks = blocks[:1], blocks[1:]
    with pytest.raises(InvalidCar, match=r"fact .* is missing"):
        load_car(snapshot_file(tmp_path, manifest_blocks + fact_blocks[:2], [root]))
    with pytest.raises(InvalidCar, match=r"manifest block .* is missing"):
        load_car(snapshot_file(tmp_path, fact_blocks, [root]))
    with pytest.raises(InvalidCar, match="no root"):
        load_car(snapshot_file(tmp_path, blocks, []))
    fact_root = CID.decode(pairs[0][0].cid)
    with pytest.raises(InvalidCar, match="not a knowhub manifest"):
        load_car(snapshot_file(tmp_path, fact_blocks, [fact_root]))
    # a manifest linking a block that is valid DAG-CBOR but not a fact record
    other = dag_cbor.encode({"v": 1, "text": "x"})
    other_cid = cid_for(other, "dag-cbor")
    bad_root = dag_cbor.encode(
        {
            "v": 1,
            "type": "knowhub/manifest",
            "count": 1,
            "facts": [other_cid],
            "signatures": [b"\x01" * 65],
        }
    )
    bad_root_cid = CID.decode(dag_cbor_cid(bad_root))
    with pytest.raises(InvalidCar, match="not a valid fact record"):
        load_car(
            snapshot_file(tmp_path, [(bad_root_cid, bad_root), (other_cid, other)], [bad_root_cid])
        )
    assert raw_cid(b"x")  # raw blocks are fine in CARs, just never facts


def crafted_leaf(facts: list[Fact], signatures: list[bytes] | None, **extra: Any) -> bytes:
    obj: dict[str, Any] = {
        "v": 1,
        "type": "knowhub/manifest",
        "count": len(facts),
        "facts": [CID.decode(f.cid) for f in facts],
        **extra,
    }
    if signatures is not None:
        obj["signatures"] = signatures
    return dag_cbor.encode(obj)


def crafted_car(tmp_path: Path, leaf: bytes, facts: list[Fact]) -> Path:
    root = cid_for(leaf, "dag-cbor")
    blocks = [(root, leaf)] + [(CID.decode(f.cid), f.block) for f in facts]
    return snapshot_file(tmp_path, blocks, [root])


def test_car_cannot_forge_provenance(tmp_path: Path) -> None:
    """Every fact in a CAR carries its contributor's valid signature, or the CAR is refused."""
    alice_fact, alice_sig = signed_fact(ALICE, "Alice's fact")
    # an unsigned fact naming Alice (the old snapshot format: a batch-style manifest)
    with pytest.raises(InvalidCar, match="without their signatures"):
        load_car(crafted_car(tmp_path, crafted_leaf([alice_fact], None), [alice_fact]))
    # a fact naming Alice signed by Mallory
    by_mallory = bytes.fromhex(MALLORY.sign_cid(alice_fact.cid)[2:])
    with pytest.raises(InvalidCar, match=rf"fact {alice_fact.cid} .*not by the record"):
        load_car(crafted_car(tmp_path, crafted_leaf([alice_fact], [by_mallory]), [alice_fact]))
    # Alice's signature of another fact
    _other, other_sig = signed_fact(ALICE, "another fact")
    with pytest.raises(InvalidCar, match="has no valid signature"):
        load_car(crafted_car(tmp_path, crafted_leaf([alice_fact], [other_sig]), [alice_fact]))
    # forged bytes: well-formed (v 27, low s), recovering to nobody in particular
    forged = b"\x01" * 32 + b"\x02" * 32 + b"\x1b"
    with pytest.raises(InvalidCar, match="has no valid signature"):
        load_car(crafted_car(tmp_path, crafted_leaf([alice_fact], [forged]), [alice_fact]))
    # malformed: high s, bad v
    for bad in (b"\x01" * 32 + b"\xff" * 32 + b"\x1b", alice_sig[:64] + b"\x05"):
        with pytest.raises(InvalidCar, match="has no valid signature"):
            load_car(crafted_car(tmp_path, crafted_leaf([alice_fact], [bad]), [alice_fact]))
    # a fact naming no contributor cannot be signed by anyone
    anonymous = make_fact("nobody's fact")
    with pytest.raises(InvalidCar, match="names no contributor"):
        load_car(crafted_car(tmp_path, crafted_leaf([anonymous], [alice_sig]), [anonymous]))
    # one bad fact among good ones rejects the CAR and is named
    good = [signed_fact(ALICE, f"good {i}") for i in range(3)]
    facts = sorted([*(f for f, _ in good), alice_fact], key=lambda f: f.cid)
    sigs = {f.cid: s for f, s in good} | {alice_fact.cid: by_mallory}
    leaf = crafted_leaf(facts, [sigs[f.cid] for f in facts])
    with pytest.raises(InvalidCar, match=alice_fact.cid):
        load_car(crafted_car(tmp_path, leaf, facts))


def test_car_manifest_must_be_closed_and_canonical(tmp_path: Path) -> None:
    alice_fact, alice_sig = signed_fact(ALICE, "Alice's fact")
    blob = crafted_leaf([alice_fact], [alice_sig], blob=b"\x00" * (1 << 20))
    with pytest.raises(InvalidCar, match=r"not a knowhub manifest.*blob"):
        load_car(crafted_car(tmp_path, blob, [alice_fact]))
    # valid fields, but not the canonical manifest of its facts (out of CID order)
    pairs = sorted([signed_fact(ALICE, f"fact {i}") for i in range(3)], key=lambda p: p[0].cid)
    shuffled = list(reversed(pairs))
    leaf = crafted_leaf([f for f, _ in shuffled], [s for _, s in shuffled])
    with pytest.raises(InvalidCar, match="not the canonical snapshot manifest"):
        load_car(crafted_car(tmp_path, leaf, [f for f, _ in shuffled]))
    # signatures are stored in canonical form (v 27/28): v 0/1 in a manifest is refused
    low_v = alice_sig[:64] + bytes([alice_sig[64] - 27])
    with pytest.raises(InvalidCar, match="canonical form"):
        load_car(crafted_car(tmp_path, crafted_leaf([alice_fact], [low_v]), [alice_fact]))


def other_hash_cid(name: str, data: bytes) -> CID:
    digest = bytes(range(32)) if name == "blake3" else multihash.digest(data, name)[-32:]
    return CID("base32", 1, "dag-cbor", (name, digest))


@pytest.mark.parametrize("name", ["blake3", "sha3-256", "identity", "sha2-512"])
def test_blocks_must_be_sha2_256(tmp_path: Path, name: str) -> None:
    fact, _ = signed_fact(ALICE, "hashed otherwise")
    if name == "identity":
        cid = CID("base32", 1, "dag-cbor", multihash.digest(fact.block, "identity"))
    elif name == "sha2-512":
        cid = CID("base32", 1, "dag-cbor", multihash.digest(fact.block, "sha2-512"))
    else:
        cid = other_hash_cid(name, fact.block)
    data = car_bytes([cid], [(cid, fact.block)])
    with pytest.raises(InvalidCar, match=f"uses the hash {name}: this node accepts only sha2-256"):
        load_car(snapshot_file(tmp_path, [(cid, fact.block)], [cid]))
    # the push parser refuses it too, before the block's data has arrived
    stream = CarStream()
    header_len = data[0] + 1
    with pytest.raises(InvalidCar, match="uses the hash"):
        stream.feed(data[: header_len + 1 + len(bytes(cid))])
    # and a block (not a root) with that hash
    good_root, blocks = snapshot_blocks([signed_fact(ALICE, "fine")])
    with pytest.raises(InvalidCar, match="uses the hash"):
        load_car(snapshot_file(tmp_path, [*blocks, (cid, fact.block)], [good_root]))


def test_car_stream_verifies_as_bytes_arrive(tmp_path: Path) -> None:
    pairs = [signed_fact(ALICE, f"streamed fact {i}") for i in range(4)]
    root, blocks = snapshot_blocks(pairs)
    data = car_bytes([root], blocks)
    stream = CarStream()
    got: list[tuple[CID, bytes]] = []
    for i in range(len(data)):  # one byte at a time
        got += stream.feed(data[i : i + 1])
    stream.close()
    assert stream.roots == [root]
    assert got == blocks
    # a corrupt byte inside the second block: refused when that block is complete, before
    # anything after it is received
    first = len(car_bytes([root], blocks[:1]))
    second_end = len(car_bytes([root], blocks[:2]))
    bad = bytearray(data)
    bad[second_end - 1] ^= 0x01
    stream = CarStream()
    assert stream.feed(bytes(bad[:first])) == blocks[:1]
    with pytest.raises(InvalidCar, match=r"block 1 .* does not match its CID"):
        stream.feed(bytes(bad[first:second_end]))
    # an oversized section length is refused from its prefix alone
    with pytest.raises(InvalidCar, match="not within"):
        CarStream().feed(car_bytes([root], []) + b"\xff\xff\xff\x7f")
    # cut short: close() says so
    stream = CarStream()
    stream.feed(data[:-5])
    with pytest.raises(InvalidCar, match="ends inside block"):
        stream.close()
