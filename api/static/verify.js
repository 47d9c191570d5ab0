// In-browser check of a proof-carrying search hit (POST /v1/query with "proofs": true).
//
// The page does not take the node's word for a hit: from the record block the hit carries it
//   1. recomputes the CID (CIDv1, dag-cbor, sha2-256, base32) and compares it with the hit's;
//   2. decodes the DAG-CBOR record and compares its text, metadata and contributor with the
//      hit's;
//   3. recovers the signer of the EIP-191 personal_sign signature over the CID string
//      (keccak256 + secp256k1 public-key recovery, in eth.js) and compares it with the
//      contributor;
//   4. for an anchored hit, folds the Merkle proof from the fact's leaf and compares it with the
//      root the node names.
// That the root is really anchored on chain is NOT checked here (that needs a chain RPC): the
// page shows the node's own report for it. `knowhub verify` does the full check.
//
// Python references: node/cid.py, node/facts.py, node/signing.py, node/merkle.py,
// node/proofs.py. Test vectors from them: tests/web/verify_vectors.json.
//
// No dependencies: SHA-256 comes from WebCrypto, everything else is plain JS with BigInt.

import {
  bigIntTo32Bytes,
  bytesToBigInt,
  bytesToHex,
  concatBytes,
  hexToBytes,
  keccak256,
  recoverAddress,
} from "./eth.js";

export {
  bytesToHex,
  hexToBytes,
  keccak256,
  personalMessageHash,
  recoverAddress,
  recoverPublicKey,
  publicKeyToAddress,
  toChecksumAddress,
} from "./eth.js";

const utf8 = new TextEncoder();

// ---------------------------------------------------------------------------------- bytes

function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

// Standard base64 with padding, strictly: anything else is refused rather than skipped.
export function base64ToBytes(text) {
  const s = String(text);
  if (s.length % 4 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new Error("block is not base64");
  const binary = atob(s);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

// RFC 4648 base32, lower case, no padding (the multibase "b" of IPFS CIDv1 strings).
const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

export function base32Lower(bytes) {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1; // keep only the bits not written yet
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

// ------------------------------------------------------------------------------------ CID

export function hasWebCrypto() {
  return Boolean(globalThis.crypto?.subtle);
}

export async function sha256(bytes) {
  return new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bytes));
}

// CIDv1 (0x01), dag-cbor (0x71), sha2-256 (0x12), 32-byte digest (0x20): the binary CID.
const DAG_CBOR_PREFIX = Uint8Array.of(0x01, 0x71, 0x12, 0x20);

export async function cidBytesOfBlock(bytes) {
  return concatBytes(DAG_CBOR_PREFIX, await sha256(bytes));
}

export async function cidOfBlock(bytes) {
  return "b" + base32Lower(await cidBytesOfBlock(bytes));
}

// ------------------------------------------------------------------------------- DAG-CBOR

// A strict decoder for what DAG-CBOR records hold: unsigned and negative integers (a Number
// when it is a safe integer, a BigInt beyond 2^53), byte strings (Uint8Array), UTF-8 text,
// arrays, maps with text keys (plain objects), false, true, null and floats. Tags,
// indefinite lengths, undefined, other simple values, duplicate map keys and trailing bytes are
// refused.
const MAX_DEPTH = 64;

export function decodeCbor(bytes) {
  const data = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const text = new TextDecoder("utf-8", { fatal: true });
  let at = 0;

  const need = (n) => {
    if (at + n > data.length) throw new Error("CBOR ends early");
  };

  // the argument of a head: the value of additional info 0-23, or the 1/2/4/8 bytes after it
  const argument = (info) => {
    if (info < 24) return BigInt(info);
    const size = { 24: 1, 25: 2, 26: 4, 27: 8 }[info];
    if (size === undefined) throw new Error(info === 31 ? "indefinite length is not allowed" : "reserved CBOR head");
    need(size);
    const value = bytesToBigInt(data.subarray(at, at + size));
    at += size;
    return value;
  };

  const length = (info) => {
    const n = argument(info);
    if (n > BigInt(data.length - at)) throw new Error("CBOR length beyond the data");
    return Number(n);
  };

  const integer = (n) => (n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n);

  const item = (depth) => {
    if (depth > MAX_DEPTH) throw new Error("CBOR nests too deep");
    need(1);
    const head = data[at++];
    const major = head >> 5;
    const info = head & 31;
    switch (major) {
      case 0:
        return integer(argument(info));
      case 1:
        return integer(-1n - argument(info));
      case 2: {
        const n = length(info);
        const out = data.slice(at, at + n);
        at += n;
        return out;
      }
      case 3: {
        const n = length(info);
        const out = text.decode(data.subarray(at, at + n));
        at += n;
        return out;
      }
      case 4: {
        const n = length(info);
        const out = [];
        for (let i = 0; i < n; i++) out.push(item(depth + 1));
        return out;
      }
      case 5: {
        const n = length(info);
        const out = {};
        for (let i = 0; i < n; i++) {
          const key = item(depth + 1);
          if (typeof key !== "string") throw new Error("CBOR map key is not a text string");
          if (Object.hasOwn(out, key)) throw new Error(`CBOR map repeats the key ${JSON.stringify(key)}`);
          // defineProperty, not out[key] = ...: a key "__proto__" stays a plain key
          Object.defineProperty(out, key, { value: item(depth + 1), enumerable: true, writable: true, configurable: true });
        }
        return out;
      }
      case 6:
        throw new Error("CBOR tags are not expected in a fact record");
      default: // 7: simple values and floats
        if (info === 20) return false;
        if (info === 21) return true;
        if (info === 22) return null;
        if (info === 25) {
          need(2);
          const half = view.getUint16(at);
          at += 2;
          return halfToNumber(half);
        }
        if (info === 26) {
          need(4);
          const value = view.getFloat32(at);
          at += 4;
          return value;
        }
        if (info === 27) {
          need(8);
          const value = view.getFloat64(at);
          at += 8;
          return value;
        }
        throw new Error(info === 31 ? "indefinite length is not allowed" : `CBOR simple value ${info} is not allowed`);
    }
  };

  const value = item(0);
  if (at !== data.length) throw new Error(`${data.length - at} bytes after the CBOR item`);
  return value;
}

// IEEE 754 half precision: sign, 5 exponent bits, 10 fraction bits.
function halfToNumber(half) {
  const sign = half & 0x8000 ? -1 : 1;
  const exponent = (half >> 10) & 31;
  const fraction = half & 1023;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

// Decoded CBOR against JSON from the node: same keys, same values. JSON numbers beyond 2^53
// were already rounded by JSON.parse, so a BigInt equals the Number it rounds to.
export function sameValue(decoded, json) {
  if (typeof decoded === "bigint") return typeof json === "number" && Number(decoded) === json;
  if (Array.isArray(decoded)) {
    return Array.isArray(json) && decoded.length === json.length && decoded.every((v, i) => sameValue(v, json[i]));
  }
  if (decoded instanceof Uint8Array || json === null || decoded === null) return decoded === json;
  if (typeof decoded === "object") {
    if (typeof json !== "object" || Array.isArray(json)) return false;
    const keys = Object.keys(decoded);
    return keys.length === Object.keys(json).length && keys.every((k) => Object.hasOwn(json, k) && sameValue(decoded[k], json[k]));
  }
  return decoded === json;
}

// ------------------------------------------------------------------------------- Merkle

// OpenZeppelin StandardMerkleTree leaves of type bytes (node/merkle.py):
// leaf = keccak256(keccak256(abi.encode(cidBytes))), inner node = keccak256(sorted pair).
function abiEncodeBytes(data) {
  const padded = new Uint8Array(Math.ceil(data.length / 32) * 32);
  padded.set(data);
  return concatBytes(bigIntTo32Bytes(32n), bigIntTo32Bytes(BigInt(data.length)), padded);
}

export function merkleFold(cidBytes, proof) {
  let node = keccak256(keccak256(abiEncodeBytes(cidBytes)));
  for (const step of proof) {
    const sibling = hexToBytes(step);
    if (sibling.length !== 32) throw new Error("a Merkle proof step is not 32 bytes");
    node = keccak256(compareBytes(node, sibling) < 0 ? concatBytes(node, sibling) : concatBytes(sibling, node));
  }
  return "0x" + bytesToHex(node);
}

// ---------------------------------------------------------------------------------- hits

// Every check of one hit; all run, and a failed one adds its reason. The result:
//   cid        the block hashes to the hit's CID
//   text       the record's text, metadata and contributor are the hit's (`record` too)
//   signer     the address the signature recovers to (null when it does not recover)
//   signature  the signer is the record's contributor
//   merkle     the Merkle proof folds to the root the node names (null: not anchored / not run)
//   anchored   "anchored" | "pending", as the node reports it (not checked here)
//   blockNumber  the anchoring block, as the node reports it
//   ok         all of the above hold (a pending hit can be ok)
//   checked    false when the browser could not check at all (no WebCrypto)
export async function verifyHit(hit) {
  const proof = hit?.proof;
  const status = proof?.status ?? hit?.provenance?.status;
  const result = {
    cid: false,
    text: false,
    record: false,
    signer: null,
    signature: false,
    merkle: null,
    anchored: status === "anchored" ? "anchored" : "pending",
    blockNumber: proof?.anchor?.block_number ?? hit?.provenance?.block_number ?? null,
    ok: false,
    checked: true,
    reasons: [],
  };
  const fail = (reason) => {
    result.reasons.push(reason);
    return result;
  };
  if (!hasWebCrypto()) {
    result.checked = false;
    return fail("not checked (insecure context)");
  }
  if (!proof || typeof proof !== "object") return fail("the node sent no proof");

  let block;
  try {
    block = base64ToBytes(proof.block);
  } catch (err) {
    return fail(err.message);
  }
  const cidBytes = await cidBytesOfBlock(block);
  const cid = "b" + base32Lower(cidBytes);
  result.cid = cid === hit.cid;
  if (!result.cid) result.reasons.push(`block hashes to ${cid}, not to the hit's CID`);

  let record;
  try {
    record = decodeCbor(block);
  } catch (err) {
    return fail(`block is not DAG-CBOR: ${err.message}`);
  }
  if (record === null || typeof record !== "object" || Array.isArray(record) || record instanceof Uint8Array) {
    return fail("block is not a record (a CBOR map)");
  }
  if (Object.hasOwn(record, "kind")) return fail(`block is a ${String(record.kind)} record, not a fact`);
  if (typeof record.text !== "string" || typeof record.contributor !== "string" || !Number.isInteger(record.v)
      || record.metadata === null || typeof record.metadata !== "object" || Array.isArray(record.metadata)) {
    return fail("block is not a fact record (v, text, metadata, contributor)");
  }
  result.text = record.text === hit.text;
  if (!result.text) result.reasons.push("text differs from the signed record's");
  const sameMetadata = !("metadata" in hit) || sameValue(record.metadata, hit.metadata ?? {});
  if (!sameMetadata) result.reasons.push("metadata differs from the signed record's");
  const sameContributor = record.contributor === hit.contributor;
  if (!sameContributor) result.reasons.push("contributor differs from the signed record's");
  result.record = result.text && sameMetadata && sameContributor;

  try {
    result.signer = recoverAddress(hit.cid, proof.signature);
    result.signature = result.signer.toLowerCase() === record.contributor.toLowerCase();
    if (!result.signature) result.reasons.push(`signature is by ${result.signer}, not by the contributor`);
  } catch (err) {
    result.reasons.push(`signature: ${err.message}`);
  }
  if (proof.tombstone != null) result.reasons.push(`revoked by tombstone ${String(proof.tombstone)}`);

  if (result.anchored === "anchored" && result.cid) {
    try {
      const root = merkleFold(cidBytes, Array.isArray(proof.merkle_proof) ? proof.merkle_proof : []);
      result.merkle = typeof proof.root === "string" && root === proof.root.toLowerCase();
    } catch {
      result.merkle = false;
    }
    if (!result.merkle) result.reasons.push("the Merkle proof does not fold to the root the node names");
  }
  result.ok = result.reasons.length === 0;
  return result;
}
