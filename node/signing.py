"""Contributor signatures and the operator key.

A contributor signs the fact's CID string (CIDv1, base32, as the node returns it) with
EIP-191 ``personal_sign``: ``keccak256("\\x19Ethereum Signed Message:\\n" + len + cid)``. The
signature is 65 bytes ``r || s || v`` as ``0x`` hex, what every Ethereum wallet produces. The
signer's EIP-55 address must equal the ``contributor`` field inside the record, so a signature
cannot be moved to another fact and a record cannot claim another contributor.

Key files hold one secp256k1 private key as JSON ``{"address", "private_key"}`` (0600).

Signing and recovery call libsecp256k1 (``coincurve``) directly: the node checks a signature
for every fact it receives, and eth_account's path (the same library underneath, behind several
layers of conversions and validation) costs ~400 us against ~60 us; importing eth_account also
costs the CLI ~0.3 s per call. ``tests/unit/test_signing.py`` holds the two to the same
answers (addresses, signatures, malformed and hostile signatures included).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from coincurve import PrivateKey, PublicKey
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address
from eth_utils.exceptions import ValidationError

from node.errors import InvalidInput, InvalidSignature, SignatureMismatch, StorageError

log = logging.getLogger(__name__)

#: CPython's default. py_ecc (imported through eth_account, which web3 imports) raises the limit
#: to 100,000 at import, which lets C-level recursion (the JSON decoder, deep DAG-CBOR) overflow
#: the C stack and kill the process on one deeply nested input instead of raising
#: RecursionError. Nothing the node runs recurses deeper than a few hundred frames (secp256k1
#: ladder: ~256). Every module that imports web3 or eth_account sets it back after the import.
PYTHON_RECURSION_LIMIT = 1000
sys.setrecursionlimit(PYTHON_RECURSION_LIMIT)

SIGNATURE_BYTES = 65
#: secp256k1 group order / 2: signatures with a larger s are malleable copies (EIP-2).
_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
#: secp256k1 group order: r must be below it.
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


#: An Ethereum address as text, any case (EIP-55 checksums are checked where they matter): the
#: one pattern the REST schemas publish and the node checks.
ADDRESS_PATTERN = "^0x[0-9a-fA-F]{40}$"


def parse_signature(signature: object) -> bytes:
    """65 bytes from ``0x``-prefixed hex; ``InvalidSignature`` (400) when malformed."""
    if not isinstance(signature, str) or not signature.startswith("0x"):
        raise InvalidSignature("signature must be 0x-prefixed hex", field="signature")
    try:
        raw = bytes.fromhex(signature[2:])
    except ValueError as exc:
        raise InvalidSignature("signature is not valid hex", field="signature") from exc
    if len(raw) != SIGNATURE_BYTES:
        raise InvalidSignature(
            f"signature must be {SIGNATURE_BYTES} bytes (r, s, v), got {len(raw)}",
            field="signature",
        )
    if raw[64] not in (0, 1, 27, 28):
        raise InvalidSignature("signature v must be 27 or 28 (or 0 or 1)", field="signature")
    if int.from_bytes(raw[32:64], "big") > _HALF_N:
        raise InvalidSignature("signature s is in the upper half (EIP-2)", field="signature")
    return raw


def normalize_signature(signature: object) -> str:
    """The canonical form stored and served: lower-case hex with v in {27, 28}."""
    raw = parse_signature(signature)
    v = raw[64] + 27 if raw[64] < 27 else raw[64]
    return "0x" + raw[:64].hex() + f"{v:02x}"


def personal_message_hash(text: str) -> bytes:
    """EIP-191 ``personal_sign`` digest of ``text``."""
    data = text.encode("utf-8")
    return bytes(keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data))


def _recover_address(cid: str, signature: str) -> bytes:
    """The 20 address bytes that signed ``cid``; ``InvalidSignature`` if none can be recovered."""
    raw = parse_signature(signature)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big")
    if not 0 < r < _N or s == 0:
        raise InvalidSignature("signature does not recover: r or s out of range", field="signature")
    recovery = raw[64] - 27 if raw[64] >= 27 else raw[64]
    try:
        public = PublicKey.from_signature_and_message(
            raw[:64] + bytes([recovery]), personal_message_hash(cid), hasher=None
        )
    except Exception as exc:  # coincurve raises ValueError or its own error for "no point"
        raise InvalidSignature(f"signature does not recover: {exc}", field="signature") from exc
    return bytes(keccak(public.format(compressed=False)[1:]))[-20:]


def recover_signer(cid: str, signature: str) -> str:
    """The EIP-55 address that signed ``cid``; ``InvalidSignature`` if none can be recovered."""
    return str(to_checksum_address(_recover_address(cid, signature)))


def check_signature(cid: str, contributor: str, signature: str) -> None:
    """Raise ``SignatureMismatch`` (401) unless ``signature`` over ``cid`` is by ``contributor``."""
    signer = _recover_address(cid, signature)
    if "0x" + signer.hex() != contributor.lower():
        raise SignatureMismatch(
            f"signature is by {to_checksum_address(signer)}, not by the record's contributor "
            f"{contributor}",
            field="signature",
        )


def signature_valid(cid: str, contributor: str | None, signature: str | None) -> bool:
    if contributor is None or signature is None:
        return False
    try:
        check_signature(cid, contributor, signature)
    except (InvalidInput, SignatureMismatch):
        return False
    return True


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A secp256k1 key: signs fact CIDs and, for the operator, chain transactions."""

    private_key: bytes

    @property
    def address(self) -> str:
        public = PrivateKey(self.private_key).public_key.format(compressed=False)
        return str(to_checksum_address(bytes(keccak(public[1:]))[-20:]))

    def sign_cid(self, cid: str) -> str:
        """EIP-191 ``personal_sign`` of ``cid``: r || s || v with v in {27, 28} and low s
        (libsecp256k1 signs deterministically, RFC 6979, and normalizes s)."""
        raw = PrivateKey(self.private_key).sign_recoverable(personal_message_hash(cid), hasher=None)
        return normalize_signature("0x" + (raw[:64] + bytes([raw[64] + 27])).hex())

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(PrivateKey().secret)


def write_key_file(path: Path, key: SigningKey) -> None:
    """Create ``path`` with mode 0600 (never overwrites an existing file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"address": key.address, "private_key": "0x" + key.private_key.hex()})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(body + "\n")
        out.flush()
        os.fsync(out.fileno())


def read_key_file(path: Path) -> SigningKey:
    """Load a key file: JSON ``{"private_key"}`` or a bare 0x hex key on one line."""
    try:
        text = path.read_text().strip()
        mode = path.stat().st_mode
    except OSError as exc:
        raise StorageError(f"cannot read key file {path}: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s is readable by other users; chmod 600 it", path)
    try:
        hex_key = json.loads(text)["private_key"] if text.startswith("{") else text
        raw = bytes.fromhex(str(hex_key).removeprefix("0x"))
        key = SigningKey(raw)
        _ = key.address  # validates the scalar
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise StorageError(f"key file {path} does not hold a secp256k1 private key") from exc
    if len(raw) != 32:
        raise StorageError(f"key file {path} does not hold a 32-byte private key")
    return key


def load_or_create_key(path: Path) -> SigningKey:
    """The operator key: read ``path``, or create it (0600) on first start."""
    if path.exists():
        return read_key_file(path)
    key = SigningKey.generate()
    write_key_file(path, key)
    log.info("created operator key %s (address %s)", path, key.address)
    return key
