// Test helper: roots and proofs from OpenZeppelin's own StandardMerkleTree for hex CIDs on stdin.
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { readFileSync } from 'node:fs';
const cids = JSON.parse(readFileSync(0, 'utf8'));
const tree = StandardMerkleTree.of(cids.map((c) => [c]), ['bytes']);
const proofs = {};
for (const [i, v] of tree.entries()) proofs[v[0]] = tree.getProof(i);
process.stdout.write(JSON.stringify({ root: tree.root, proofs }));
