// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title KnowledgeRegistry
/// @notice Anchors Merkle roots of batches of knowhub facts. Each leaf is an
/// OpenZeppelin StandardMerkleTree leaf of one fact's binary CID:
/// keccak256(bytes.concat(keccak256(abi.encode(cidBytes)))), with sorted-pair hashing.
/// Anyone can check a fact against an anchored root without trusting the node that served it.
contract KnowledgeRegistry {
    /// One storage slot per root: 20 + 6 + 6 bytes. The manifest CID and the record count
    /// are not stored: they travel in the `Anchored` event of the block named here, which is
    /// as much a part of the chain as storage (receipts are committed in the block header).
    struct Anchor {
        address submitter;
        uint48 blockNumber;
        uint48 timestamp;
    }

    mapping(bytes32 => Anchor) private anchors;

    event Anchored(bytes32 indexed root, address indexed submitter, string manifestCid, uint32 count);

    error AlreadyAnchored(bytes32 root);
    error EmptyBatch();

    /// @notice Record `root` (of `count` records, listed by the manifest `manifestCid`).
    function anchor(bytes32 root, string calldata manifestCid, uint32 count) external {
        if (count == 0) revert EmptyBatch();
        if (anchors[root].submitter != address(0)) revert AlreadyAnchored(root);
        anchors[root] = Anchor(msg.sender, uint48(block.number), uint48(block.timestamp));
        emit Anchored(root, msg.sender, manifestCid, count);
    }

    /// @notice Who anchored `root`, in which block and when; submitter is the zero address
    /// when it is not anchored. The manifest CID and count are in that block's `Anchored` event.
    function getAnchor(bytes32 root) external view returns (Anchor memory) {
        return anchors[root];
    }

    /// @notice True only when `proof` shows the fact `cid` is a leaf of `root` and `root` is anchored.
    function verifyFact(bytes calldata cid, bytes32[] calldata proof, bytes32 root) external view returns (bool) {
        if (anchors[root].submitter == address(0)) return false;
        bytes32 node = keccak256(bytes.concat(keccak256(abi.encode(cid))));
        for (uint256 i = 0; i < proof.length; i++) {
            bytes32 sibling = proof[i];
            node = node < sibling
                ? keccak256(abi.encodePacked(node, sibling))
                : keccak256(abi.encodePacked(sibling, node));
        }
        return node == root;
    }
}
