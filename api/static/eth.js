// Ethereum's primitives for the page's in-browser checks (verify.js): byte helpers, keccak256,
// secp256k1 public-key recovery and EIP-191 / EIP-55 addresses, in plain JS with BigInt and no
// dependencies. Python references: node/signing.py; test vectors: tests/web/verify_vectors.json.

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

export function bytesToBigInt(bytes) {
  return bytes.length ? BigInt("0x" + bytesToHex(bytes)) : 0n;
}

export function bigIntTo32Bytes(value) {
  return hexToBytes(value.toString(16).padStart(64, "0"));
}

export function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
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
