"""Merkle trees compatible with OpenZeppelin's StandardMerkleTree for leaves of type ``bytes``.

Leaf of a fact: ``keccak256(bytes.concat(keccak256(abi.encode(cidBytes))))`` with ``cidBytes``
the binary CID; inner nodes hash the sorted pair. Leaves are sorted, and the tree is laid out
as OpenZeppelin does (an array of 2n-1 nodes, leaves at the end in reverse order), so roots and
proofs equal those of ``StandardMerkleTree.of(values, ["bytes"])`` and verify with
``MerkleProof.verify`` on chain (see contracts/KnowledgeRegistry.sol).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_hash.auto import keccak


def abi_encode_bytes(data: bytes) -> bytes:
    """``abi.encode(bytes)``: offset 0x20, length, then the data padded to 32 bytes."""
    padded = data + b"\x00" * (-len(data) % 32)
    return (32).to_bytes(32, "big") + len(data).to_bytes(32, "big") + padded


def leaf_hash(cid_bytes: bytes) -> bytes:
    return bytes(keccak(keccak(abi_encode_bytes(cid_bytes))))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return bytes(keccak(a + b if a < b else b + a))


@dataclass(frozen=True, slots=True)
class MerkleTree:
    root: bytes
    #: leaf hash -> proof (sibling hashes, leaf to root)
    proofs: dict[bytes, list[bytes]]

    def proof(self, cid_bytes: bytes) -> list[bytes]:
        return self.proofs[leaf_hash(cid_bytes)]


def build_tree(cids: Sequence[bytes]) -> MerkleTree:
    """The tree of the binary CIDs ``cids`` (duplicates are one leaf)."""
    if not cids:
        raise ValueError("a Merkle tree needs at least one leaf")
    leaves = sorted({leaf_hash(c) for c in cids})
    size = 2 * len(leaves) - 1
    tree: list[bytes] = [b""] * size
    for i, leaf in enumerate(leaves):
        tree[size - 1 - i] = leaf
    for i in range(size - 1 - len(leaves), -1, -1):
        tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2])
    proofs: dict[bytes, list[bytes]] = {}
    for i in range(len(leaves)):
        index = size - 1 - i
        path = []
        while index > 0:
            sibling = index + 1 if index % 2 else index - 1
            path.append(tree[sibling])
            index = (index - 1) // 2
        proofs[tree[size - 1 - i]] = path
    return MerkleTree(tree[0], proofs)


def verify_proof(cid_bytes: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    node = leaf_hash(cid_bytes)
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root
