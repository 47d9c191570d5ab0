// The page's in-browser checks (api/static/verify.js) against vectors computed by the node's
// Python code (tests/web/make_verify_vectors.py -> verify_vectors.json), run by `node --test`
// from tests/integration/test_web.py.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  base32Lower,
  base64ToBytes,
  bytesToHex,
  cidOfBlock,
  decodeCbor,
  hexToBytes,
  keccak256,
  merkleFold,
  personalMessageHash,
  recoverAddress,
  toChecksumAddress,
  verifyHit,
} from "../../api/static/verify.js";

const vectors = JSON.parse(readFileSync(new URL("./verify_vectors.json", import.meta.url), "utf8"));
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

// {"$bigint"} and {"$bytes"} of the vector file back to what the decoder returns
function untag(value) {
  if (Array.isArray(value)) return value.map(untag);
  if (value && typeof value === "object") {
    if ("$bigint" in value) return BigInt(value.$bigint);
    if ("$bytes" in value) return hexToBytes(value.$bytes);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, untag(v)]));
  }
  return value;
}

// a hit as POST /v1/query with proofs=true serves it (JSON round trip included)
function hitOf(fact, anchored = true) {
  const hit = {
    ...fact.hit,
    score: 0.5,
    provenance: { status: anchored ? "anchored" : "pending", block_number: anchored ? 12 : null },
    proof: {
      block: fact.block,
      signature: fact.signature,
      status: anchored ? "anchored" : "pending",
      root: anchored ? fact.root : null,
      merkle_proof: anchored ? fact.merkle_proof : [],
      anchor: anchored ? { chain_id: 31337, registry: "0x" + "11".repeat(20), block_number: 12, tx_hash: "0x" + "22".repeat(32), manifest_cid: "bafyreimanifest", anchored_at: 1 } : null,
      tombstone: null,
    },
  };
  return JSON.parse(JSON.stringify(hit));
}

const toBase64 = (bytes) => Buffer.from(bytes).toString("base64");
const flipHexDigit = (hex, at) => hex.slice(0, at) + (hex[at] === "0" ? "1" : "0") + hex.slice(at + 1);

test("keccak256: known digests, block-boundary lengths and the Python vectors", () => {
  assert.equal(bytesToHex(keccak256(new Uint8Array())), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
  assert.equal(bytesToHex(keccak256("abc")), "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
  assert.ok(vectors.keccak.some((v) => v.input.length / 2 > 136));
  for (const v of vectors.keccak) assert.equal(bytesToHex(keccak256(hexToBytes(v.input))), v.hash, `input of ${v.input.length / 2} bytes`);
});

test("the CID recomputed from each block is the node's", async () => {
  assert.equal(vectors.facts.length >= 4, true);
  for (const fact of vectors.facts) assert.equal(await cidOfBlock(base64ToBytes(fact.block)), fact.cid);
  assert.equal(base32Lower(Uint8Array.of(0xff)), "74");
  assert.equal(base32Lower(new TextEncoder().encode("foobar")), "mzxw6ytboi");
});

test("each block decodes to the record the node encoded", () => {
  for (const fact of vectors.facts) assert.deepEqual(decodeCbor(base64ToBytes(fact.block)), untag(fact.record));
  const large = decodeCbor(base64ToBytes(vectors.facts[2].block)).metadata;
  assert.equal(large.max, 2n ** 63n - 1n);
  assert.equal(large.min, -(2n ** 63n));
  assert.equal(large.safe, Number.MAX_SAFE_INTEGER);
  assert.deepEqual(large.empty, []);
  assert.equal(decodeCbor(base64ToBytes(vectors.facts[3].block)).supersedes, vectors.facts[0].cid);
});

test("the CBOR decoder: floats, null, nesting, bytes, 64-bit integers", () => {
  for (const v of vectors.cbor) assert.deepEqual(decodeCbor(hexToBytes(v.hex)), untag(v.value), v.hex);
  assert.equal(decodeCbor(hexToBytes("f93c00")), 1); // half float
  assert.equal(decodeCbor(hexToBytes("f9fc00")), -Infinity);
  assert.equal(decodeCbor(hexToBytes("fa3fc00000")), 1.5); // single float
  assert.deepEqual(Object.keys(decodeCbor(hexToBytes("a1695f5f70726f746f5f5f01"))), ["__proto__"]);
  assert.equal(Object.getPrototypeOf(decodeCbor(hexToBytes("a1695f5f70726f746f5f5f01"))), Object.prototype);
});

test("the CBOR decoder refuses what DAG-CBOR does not allow", () => {
  const refused = {
    "9f01ff": /indefinite/, // indefinite array
    "7f6161ff": /indefinite/, // indefinite text
    "d82a4100": /tags/, // tag 42
    "0101": /after the CBOR item/, // trailing byte
    "a2616101616102": /repeats the key/, // {"a": 1, "a": 2}
    a10101: /key is not a text string/, // {1: 1}
    "7801": /ends early|beyond/, // truncated
    f7: /simple value/, // undefined
    "62c328": /./, // invalid UTF-8
    "1c": /reserved/,
  };
  for (const [hex, reason] of Object.entries(refused)) assert.throws(() => decodeCbor(hexToBytes(hex)), reason, hex);
  assert.throws(() => decodeCbor(new Uint8Array(200).fill(0x81)), /too deep/);
});

test("the signer recovered from each signature is the node's signer", () => {
  for (const fact of vectors.facts) {
    assert.equal("0x" + bytesToHex(personalMessageHash(fact.cid)), fact.message_hash);
    assert.equal(recoverAddress(fact.cid, fact.signature), fact.signer);
  }
  assert.equal(recoverAddress(vectors.facts[0].cid, vectors.other_signature), vectors.other_signer);
  assert.equal(toChecksumAddress(vectors.signer.toLowerCase()), vectors.signer);
});

test("malformed and malleable signatures are refused", () => {
  const { cid, signature } = vectors.facts[0];
  assert.throws(() => recoverAddress(cid, signature.slice(0, -2)), /65 bytes/);
  assert.throws(() => recoverAddress(cid, signature.slice(0, -2) + "1d"), /v must be/);
  const s = BigInt("0x" + signature.slice(66, 130));
  const v = parseInt(signature.slice(130), 16);
  const high = signature.slice(0, 66) + (N - s).toString(16).padStart(64, "0") + (v === 27 ? "1c" : "1b");
  assert.throws(() => recoverAddress(cid, high), /upper half/);
  assert.throws(() => recoverAddress(cid, "0x" + "00".repeat(64) + "1b"), /out of range/);
});

test("every untouched hit verifies, anchored (Merkle proof folds) or pending", async () => {
  for (const fact of vectors.facts) {
    assert.equal(merkleFold(cidBytes(fact), fact.merkle_proof), fact.root);
    const anchored = await verifyHit(hitOf(fact));
    assert.deepEqual(
      { ok: anchored.ok, cid: anchored.cid, text: anchored.text, record: anchored.record, signature: anchored.signature, merkle: anchored.merkle, anchored: anchored.anchored, blockNumber: anchored.blockNumber, reasons: anchored.reasons },
      { ok: true, cid: true, text: true, record: true, signature: true, merkle: true, anchored: "anchored", blockNumber: 12, reasons: [] },
    );
    assert.equal(anchored.signer, fact.signer);
    const pending = await verifyHit(hitOf(fact, false));
    assert.equal(pending.ok, true);
    assert.equal(pending.anchored, "pending");
    assert.equal(pending.merkle, null);
  }
});

// the binary CID of a fact (for the Merkle fold), from its base32 string
function cidBytes(fact) {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let bits = "";
  for (const ch of fact.cid.slice(1)) bits += alphabet.indexOf(ch).toString(2).padStart(5, "0");
  return Uint8Array.from(bits.match(/.{8}/g), (b) => parseInt(b, 2));
}

test("a flipped byte of the block fails the hit", async () => {
  const fact = vectors.facts[1];
  const bytes = base64ToBytes(fact.block);
  for (const at of [0, 5, Math.floor(bytes.length / 2), bytes.length - 1]) {
    const tampered = bytes.slice();
    tampered[at] ^= 0x01;
    const hit = hitOf(fact);
    hit.proof.block = toBase64(tampered);
    const result = await verifyHit(hit);
    assert.equal(result.ok, false, `byte ${at}`);
    assert.equal(result.cid, false);
    assert.match(result.reasons[0], /block hashes to bafyrei\w+, not to the hit's CID/);
  }
  const hit = hitOf(fact);
  hit.proof.block = "!" + fact.block.slice(1);
  assert.deepEqual((await verifyHit(hit)).reasons, ["block is not base64"]);
});

test("a flipped hex digit of the signature fails the hit", async () => {
  const fact = vectors.facts[0];
  for (const at of [2, 30, 65, 66, 100, 129, 130, 131]) {
    const hit = hitOf(fact);
    hit.proof.signature = flipHexDigit(fact.signature, at);
    const result = await verifyHit(hit);
    assert.equal(result.ok, false, `digit ${at}`);
    assert.equal(result.signature, false);
    assert.equal(result.cid, true);
    assert.match(result.reasons.join(" "), /^signature/, `digit ${at}`);
  }
  const hit = hitOf(fact);
  hit.proof.signature = vectors.other_signature; // a good signature, by someone else
  const result = await verifyHit(hit);
  assert.equal(result.signer, vectors.other_signer);
  assert.deepEqual(result.reasons, [`signature is by ${vectors.other_signer}, not by the contributor`]);
});

test("a changed text, metadata or contributor fails the hit", async () => {
  const fact = vectors.facts[2];
  const text = hitOf(fact);
  text.text = fact.hit.text.replace("Integers", "Integer");
  assert.deepEqual((await verifyHit(text)).reasons, ["text differs from the signed record's"]);
  assert.equal((await verifyHit(text)).text, false);
  const metadata = hitOf(fact);
  metadata.metadata.yes = false;
  assert.deepEqual((await verifyHit(metadata)).reasons, ["metadata differs from the signed record's"]);
  const extra = hitOf(fact);
  extra.metadata.added = "x";
  assert.equal((await verifyHit(extra)).ok, false);
  const contributor = hitOf(fact);
  contributor.contributor = vectors.other_signer;
  assert.deepEqual((await verifyHit(contributor)).reasons, ["contributor differs from the signed record's"]);
  const cid = hitOf(fact); // the hit names another fact's CID
  cid.cid = vectors.facts[0].cid;
  assert.equal((await verifyHit(cid)).ok, false);
});

test("a wrong Merkle proof, a tombstone or a missing proof fails the hit", async () => {
  const fact = vectors.facts[0];
  const root = hitOf(fact);
  root.proof.root = "0x" + "ab".repeat(32);
  assert.deepEqual((await verifyHit(root)).reasons, ["the Merkle proof does not fold to the root the node names"]);
  const step = hitOf(fact);
  step.proof.merkle_proof[0] = flipHexDigit(step.proof.merkle_proof[0], 10);
  assert.equal((await verifyHit(step)).merkle, false);
  const revoked = hitOf(fact);
  revoked.proof.tombstone = "bafyreitomb";
  assert.match((await verifyHit(revoked)).reasons.join(), /revoked by tombstone bafyreitomb/);
  const bare = hitOf(fact);
  delete bare.proof;
  assert.deepEqual((await verifyHit(bare)).reasons, ["the node sent no proof"]);
});

test("without WebCrypto (an insecure context) nothing is claimed", async () => {
  const saved = Object.getOwnPropertyDescriptor(globalThis, "crypto");
  Object.defineProperty(globalThis, "crypto", { value: undefined, configurable: true });
  try {
    const result = await verifyHit(hitOf(vectors.facts[0]));
    assert.equal(result.checked, false);
    assert.equal(result.ok, false);
    assert.deepEqual(result.reasons, ["not checked (insecure context)"]);
  } finally {
    Object.defineProperty(globalThis, "crypto", saved);
  }
});
