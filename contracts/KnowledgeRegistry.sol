// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title KnowledgeRegistry
/// @notice Anchors Merkle roots of batches of knowhub facts. Each leaf is an
/// OpenZeppelin StandardMerkleTree leaf of one fact's binary CID:
/// keccak256(bytes.concat(keccak256(abi.encode(cidBytes)))), with sorted-pair hashing.
/// Anyone can check a fact against an anchored root without trusting the node that served it.
contract KnowledgeRegistry {
    struct Anchor {
        address submitter;
        uint64 blockNumber;
        uint64 timestamp;
        uint32 count;
        string manifestCid;
    }

    mapping(bytes32 => Anchor) private anchors;

    event Anchored(bytes32 indexed root, address indexed submitter, string manifestCid, uint32 count);

    error AlreadyAnchored(bytes32 root);
    error EmptyBatch();

    /// @notice Record `root` (of `count` facts, listed by the manifest `manifestCid`).
    function anchor(bytes32 root, string calldata manifestCid, uint32 count) external {
        if (count == 0) revert EmptyBatch();
        if (anchors[root].submitter != address(0)) revert AlreadyAnchored(root);
        anchors[root] = Anchor(msg.sender, uint64(block.number), uint64(block.timestamp), count, manifestCid);
        emit Anchored(root, msg.sender, manifestCid, count);
    }

    /// @notice The anchor record of `root`; submitter is the zero address when not anchored.
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
