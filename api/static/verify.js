// In-browser check of a proof-carrying search hit (POST /v1/query with "proofs": true).
//
// The page does not take the node's word for a hit: from the record block the hit carries it
//   1. recomputes the CID (CIDv1, dag-cbor, sha2-256, base32) and compares it with the hit's;
//   2. decodes the DAG-CBOR record and compares its text, metadata and contributor with the
//      hit's;
//   3. recovers the signer of the EIP-191 personal_sign signature over the CID string
//      (keccak256 + secp256k1 public-key recovery, written below) and compares it with the
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

const utf8 = new TextEncoder();

// ---------------------------------------------------------------------------------- bytes

export function hexToBytes(hex) {
  const body = String(hex).replace(/^0x/i, "");
  if (body.length % 2 || /[^0-9a-fA-F]/.test(body)) throw new Error("not hex");
  const out = new Uint8Array(body.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(body.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function bytesToBigInt(bytes) {
  return bytes.length ? BigInt("0x" + bytesToHex(bytes)) : 0n;
}

function bigIntTo32Bytes(value) {
  return hexToBytes(value.toString(16).padStart(64, "0"));
}

function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

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

// --------------------------------------------------------------------------------- keccak

// Keccak-f[1600] on 25 lanes of 64 bits (BigInt), lane (x, y) at index x + 5y.
const MASK64 = (1n << 64n) - 1n;

const rotl64 = (lane, n) => (n === 0n ? lane : ((lane << n) | (lane >> (64n - n))) & MASK64);

// Rotation offsets of the rho step: walk (x, y) -> (y, 2x + 3y) from (1, 0); step t rotates by
// (t + 1)(t + 2) / 2 mod 64 (Keccak reference, section 1.2).
const RHO = new Array(25).fill(0n);
for (let t = 0, x = 1, y = 0; t < 24; t++) {
  RHO[x + 5 * y] = BigInt((((t + 1) * (t + 2)) / 2) % 64);
  [x, y] = [y, (2 * x + 3 * y) % 5];
}

// Round constants of the iota step from the LFSR x^8 + x^6 + x^5 + x^4 + 1: bit j of round i's
// constant (at position 2^j - 1) is the LFSR output number j + 7i.
function lfsrBit(t) {
  let r = 1;
  for (let i = 0; i < t % 255; i++) {
    r <<= 1;
    if (r & 0x100) r ^= 0x171;
  }
  return r & 1;
}
const ROUND_CONSTANTS = Array.from({ length: 24 }, (_, i) => {
  let rc = 0n;
  for (let j = 0; j < 7; j++) if (lfsrBit(j + 7 * i)) rc |= 1n << BigInt(2 ** j - 1);
  return rc;
});

function keccakF1600(a) {
  const c = new Array(5);
  const b = new Array(25);
  for (const rc of ROUND_CONSTANTS) {
    // theta: xor each column's parity into its neighbours
    for (let x = 0; x < 5; x++) c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
    for (let x = 0; x < 5; x++) {
      const d = c[(x + 4) % 5] ^ rotl64(c[(x + 1) % 5], 1n);
      for (let y = 0; y < 25; y += 5) a[x + y] ^= d;
    }
    // rho and pi: rotate each lane, move (x, y) to (y, 2x + 3y)
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl64(a[x + 5 * y], RHO[x + 5 * y]);
    }
    // chi: the only non-linear step, along each row
    for (let y = 0; y < 25; y += 5) {
      for (let x = 0; x < 5; x++) a[x + y] = b[x + y] ^ ((b[((x + 1) % 5) + y] ^ MASK64) & b[((x + 2) % 5) + y]);
    }
    // iota
    a[0] ^= rc;
  }
}

// Keccak-256 as Ethereum uses it: rate 136 bytes, the original Keccak padding (0x01 ... 0x80),
// not SHA3-256's 0x06.
const RATE = 136;

export function keccak256(input) {
  const bytes = typeof input === "string" ? utf8.encode(input) : input;
  const padded = new Uint8Array((Math.floor(bytes.length / RATE) + 1) * RATE);
  padded.set(bytes);
  padded[bytes.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  const state = new Array(25).fill(0n);
  for (let block = 0; block < padded.length; block += RATE) {
    for (let lane = 0; lane < RATE / 8; lane++) {
      let value = 0n; // lanes are little-endian
      for (let k = 7; k >= 0; k--) value = (value << 8n) | BigInt(padded[block + 8 * lane + k]);
      state[lane] ^= value;
    }
    keccakF1600(state);
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = Number((state[i >> 3] >> BigInt(8 * (i & 7))) & 0xffn);
  return out;
}

// ------------------------------------------------------------------------------ secp256k1

// y^2 = x^3 + 7 over the prime field P; G generates the group of prime order N.
const P = 2n ** 256n - 2n ** 32n - 977n;
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const G = {
  x: 0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798n,
  y: 0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8n,
};

const mod = (a, m = P) => {
  const r = a % m;
  return r >= 0n ? r : r + m;
};

function powMod(base, exponent, m = P) {
  let result = 1n;
  base = mod(base, m);
  for (; exponent > 0n; exponent >>= 1n) {
    if (exponent & 1n) result = (result * base) % m;
    base = (base * base) % m;
  }
  return result;
}

// Inverse modulo a prime m by the extended Euclidean algorithm.
function invMod(a, m) {
  let [r0, r1] = [mod(a, m), m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new Error("no inverse");
  return mod(s0, m);
}

// Points in Jacobian coordinates (X, Y, Z) stand for (X/Z^2, Y/Z^3); Z = 0 is the point at
// infinity. This spares a field inversion in every addition.
const INFINITY = { X: 0n, Y: 1n, Z: 0n };
const jacobian = (point) => ({ X: point.x, Y: point.y, Z: 1n });

function pointDouble(p) {
  if (p.Z === 0n || p.Y === 0n) return INFINITY;
  const a = mod(p.X * p.X);
  const b = mod(p.Y * p.Y);
  const c = mod(b * b);
  const d = mod(2n * (mod((p.X + b) ** 2n) - a - c));
  const e = mod(3n * a); // the curve's a = 0
  const x = mod(e * e - 2n * d);
  return { X: x, Y: mod(e * (d - x) - 8n * c), Z: mod(2n * p.Y * p.Z) };
}

function pointAdd(p, q) {
  if (p.Z === 0n) return q;
  if (q.Z === 0n) return p;
  const pz2 = mod(p.Z * p.Z);
  const qz2 = mod(q.Z * q.Z);
  const u1 = mod(p.X * qz2);
  const u2 = mod(q.X * pz2);
  const s1 = mod(p.Y * q.Z * qz2);
  const s2 = mod(q.Y * p.Z * pz2);
  if (u1 === u2) return s1 === s2 ? pointDouble(p) : INFINITY;
  const h = mod(u2 - u1);
  const r = mod(s2 - s1);
  const h2 = mod(h * h);
  const h3 = mod(h2 * h);
  const x = mod(r * r - h3 - 2n * u1 * h2);
  return { X: x, Y: mod(r * (u1 * h2 - x) - s1 * h3), Z: mod(p.Z * q.Z * h) };
}

// a*A + b*B with one shared chain of doublings (Shamir's trick).
function doubleScalarMul(a, pa, b, pb) {
  const both = pointAdd(pa, pb);
  let acc = INFINITY;
  for (let bit = 255n; bit >= 0n; bit--) {
    acc = pointDouble(acc);
    const ia = (a >> bit) & 1n;
    const ib = (b >> bit) & 1n;
    if (ia && ib) acc = pointAdd(acc, both);
    else if (ia) acc = pointAdd(acc, pa);
    else if (ib) acc = pointAdd(acc, pb);
  }
  return acc;
}

function toAffine(p) {
  if (p.Z === 0n) throw new Error("point at infinity");
  const zi = invMod(p.Z, P);
  const zi2 = mod(zi * zi);
  return { x: mod(p.X * zi2), y: mod(p.Y * zi2 * zi) };
}

// The public key (affine point) that made signature (r, s) of the 32-byte digest, with
// recovery id 0 or 1 (the parity of the y of the point R whose x is r):
//   Q = r^-1 (s R - e G)
export function recoverPublicKey(digest, r, s, recovery) {
  if (r <= 0n || r >= N || s <= 0n || s >= N) throw new Error("r or s out of range");
  if (recovery !== 0 && recovery !== 1) throw new Error("recovery id must be 0 or 1");
  const alpha = mod(r * r * r + 7n);
  let y = powMod(alpha, (P + 1n) / 4n); // a square root, since P = 3 (mod 4)
  if (mod(y * y) !== alpha) throw new Error("r is not the x of a curve point");
  if (Number(y & 1n) !== recovery) y = P - y;
  const e = mod(bytesToBigInt(digest), N);
  const rInverse = invMod(r, N);
  const u1 = mod(-e * rInverse, N);
  const u2 = mod(s * rInverse, N);
  return toAffine(doubleScalarMul(u1, jacobian(G), u2, jacobian({ x: r, y })));
}

// --------------------------------------------------------------------------- Ethereum

export function publicKeyToAddress(point) {
  const hash = keccak256(concatBytes(bigIntTo32Bytes(point.x), bigIntTo32Bytes(point.y)));
  return toChecksumAddress("0x" + bytesToHex(hash.subarray(12)));
}

// EIP-55: a hex letter is upper case where the keccak of the lower-case address has a nibble >= 8.
export function toChecksumAddress(address) {
  const lower = String(address).toLowerCase().replace(/^0x/, "");
  const hash = bytesToHex(keccak256(lower));
  return "0x" + Array.from(lower, (ch, i) => (parseInt(hash[i], 16) >= 8 ? ch.toUpperCase() : ch)).join("");
}

// EIP-191 personal_sign digest: keccak256("\x19Ethereum Signed Message:\n" + byte length + message).
export function personalMessageHash(message) {
  const body = typeof message === "string" ? utf8.encode(message) : message;
  return keccak256(concatBytes(utf8.encode(`\x19Ethereum Signed Message:\n${body.length}`), body));
}

const HALF_N = N >> 1n;

// The EIP-55 address whose key signed `message` (personal_sign); throws with the reason when the
// signature is malformed or recovers to nothing. Same rules as node/signing.py: 65 bytes
// r || s || v, v in {27, 28} (or 0, 1), s in the lower half (EIP-2).
export function recoverAddress(message, signatureHex) {
  const sig = String(signatureHex ?? "");
  if (!/^0x[0-9a-fA-F]{130}$/.test(sig)) throw new Error("signature is not 0x and 65 bytes of hex");
  const raw = hexToBytes(sig);
  const r = bytesToBigInt(raw.subarray(0, 32));
  const s = bytesToBigInt(raw.subarray(32, 64));
  const v = raw[64];
  if (![0, 1, 27, 28].includes(v)) throw new Error("signature v must be 27 or 28");
  if (s > HALF_N) throw new Error("signature s is in the upper half (EIP-2)");
  return publicKeyToAddress(recoverPublicKey(personalMessageHash(message), r, s, v >= 27 ? v - 27 : v));
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
