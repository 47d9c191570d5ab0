from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import dag_cbor
import pytest
from multiformats import CID

from node import manifest as manifest_module
from node.car import InvalidCar, read_car, write_car
from node.cid import cid_for, dag_cbor_cid, raw_cid
from node.content import load_car
from node.facts import make_fact
from node.manifest import InvalidManifest, build_manifest, links, parse_manifest


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


def test_parse_manifest_rejects_other_objects() -> None:
    objects: list[Any] = [
        {"v": 1},
        {"v": 1, "type": "other"},
        [1, 2],
        {"v": 1, "type": "knowhub/manifest", "count": 1, "facts": ["not-a-link"]},
    ]
    for obj in objects:
        with pytest.raises(InvalidManifest):
            parse_manifest(dag_cbor.encode(obj))
    with pytest.raises(InvalidManifest):
        parse_manifest(b"\xff")


def snapshot_file(tmp_path: Path, blocks: list[tuple[CID, bytes]], roots: list[CID]) -> Path:
    path = tmp_path / "snap.car"
    path.write_bytes(car_bytes(roots, blocks))
    return path


def test_load_car_accepts_a_complete_snapshot(tmp_path: Path) -> None:
    facts = [make_fact(f"snapshot fact {i}") for i in range(5)]
    root, manifests = build_manifest([f.cid for f in facts])
    blocks = [(b.cid, b.data) for b in manifests] + [(CID.decode(f.cid), f.block) for f in facts]
    roots, loaded, loaded_manifests = load_car(snapshot_file(tmp_path, blocks, [root.cid]))
    assert roots == [root.cid]
    assert sorted(f.cid for f in loaded) == sorted(f.cid for f in facts)
    assert [m.cid for m in loaded_manifests] == [root.cid]


def test_load_car_rejects_incomplete_or_foreign_snapshots(tmp_path: Path) -> None:
    facts = [make_fact(f"snapshot fact {i}") for i in range(3)]
    root, manifests = build_manifest([f.cid for f in facts])
    fact_blocks = [(CID.decode(f.cid), f.block) for f in facts]
    manifest_blocks = [(b.cid, b.data) for b in manifests]
    with pytest.raises(InvalidCar, match=r"fact .* is missing"):
        load_car(snapshot_file(tmp_path, manifest_blocks + fact_blocks[:2], [root.cid]))
    with pytest.raises(InvalidCar, match=r"manifest block .* is missing"):
        load_car(snapshot_file(tmp_path, fact_blocks, [root.cid]))
    with pytest.raises(InvalidCar, match="no root"):
        load_car(snapshot_file(tmp_path, manifest_blocks + fact_blocks, []))
    fact_root = CID.decode(facts[0].cid)
    with pytest.raises(InvalidCar, match="not a knowhub manifest"):
        load_car(snapshot_file(tmp_path, fact_blocks, [fact_root]))
    # a manifest linking a block that is valid DAG-CBOR but not a fact record
    other = dag_cbor.encode({"v": 1, "text": "x"})
    other_cid = cid_for(other, "dag-cbor")
    bad_root = dag_cbor.encode(
        {"v": 1, "type": "knowhub/manifest", "count": 1, "facts": [other_cid]}
    )
    bad_root_cid = CID.decode(dag_cbor_cid(bad_root))
    with pytest.raises(InvalidCar, match="not a valid fact record"):
        load_car(
            snapshot_file(tmp_path, [(bad_root_cid, bad_root), (other_cid, other)], [bad_root_cid])
        )
    assert raw_cid(b"x")  # raw blocks are fine in CARs, just never facts
