from __future__ import annotations

import pytest

from node.merkle import abi_encode_bytes, build_tree, leaf_hash, verify_proof


def test_abi_encoding_of_bytes() -> None:
    encoded = abi_encode_bytes(b"\x01\x02")
    assert len(encoded) == 96
    assert encoded[:32] == (32).to_bytes(32, "big")
    assert encoded[32:64] == (2).to_bytes(32, "big")
    assert encoded[64:] == b"\x01\x02" + b"\x00" * 30
    assert len(abi_encode_bytes(b"x" * 32)) == 96
    assert len(abi_encode_bytes(b"x" * 33)) == 128


def test_single_leaf_duplicates_and_tampering() -> None:
    one = build_tree([b"cid-a"])
    assert one.root == leaf_hash(b"cid-a")
    assert one.proof(b"cid-a") == []
    tree = build_tree([b"cid-a", b"cid-b", b"cid-c", b"cid-a"])
    assert len(tree.proofs) == 3
    for cid in (b"cid-a", b"cid-b", b"cid-c"):
        assert verify_proof(cid, tree.proof(cid), tree.root)
        assert not verify_proof(cid + b"!", tree.proof(cid), tree.root)
    assert not verify_proof(b"cid-a", tree.proof(b"cid-b"), tree.root)
    assert build_tree([b"cid-c", b"cid-b", b"cid-a"]).root == tree.root  # order-free
    with pytest.raises(ValueError, match="at least one leaf"):
        build_tree([])
