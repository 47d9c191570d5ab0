"""Content identifiers exactly as IPFS computes them (CIDv1, sha2-256, base32).

The two CIDs the node makes itself (a DAG-CBOR fact block, a raw block) are computed directly:
a fixed four-byte prefix (version 1, codec, sha2-256, 32) before the digest, in RFC 4648 base32
lower case without padding after the multibase ``b``. ``multiformats`` builds the same string
(``tests/unit/test_cid.py`` holds them equal, and to the CIDs of real IPFS implementations in
``../shared/vectors``) but at ~500 us a CID, most of it validating each character: too slow for
a node that hashes every fact it receives.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib

from multiformats import CID, multihash

from node.errors import InvalidCid

DAG_CBOR = "dag-cbor"
RAW = "raw"

#: Longest CID string the node will even try to parse (a sha2-512 CIDv1 in base32 is ~120).
MAX_CID_STRING = 200


def cid_for(data: bytes, codec: str) -> CID:
    """The CIDv1 of ``data`` with the given codec and a sha2-256 multihash, base32 by default."""
    return CID("base32", 1, codec, multihash.digest(data, "sha2-256"))


#: CIDv1 (0x01), codec (dag-cbor 0x71, raw 0x55), sha2-256 (0x12), digest length (0x20).
_DAG_CBOR_PREFIX = b"\x01\x71\x12\x20"
_RAW_PREFIX = b"\x01\x55\x12\x20"
#: Characters of a canonical sha2-256 CIDv1 string: "b" and 36 bytes in unpadded base32.
_FACT_CID_CHARS = 59


def dag_cbor_cid(data: bytes) -> str:
    """The ``bafyrei...`` string of a DAG-CBOR block."""
    return cid_from_bytes(_DAG_CBOR_PREFIX + hashlib.sha256(data).digest())


def raw_cid(data: bytes) -> str:
    """The ``bafkrei...`` string of a raw block.

    Equal to what ``ipfs add --cid-version=1 --raw-leaves`` prints for content <= 256 KiB.
    """
    return cid_from_bytes(_RAW_PREFIX + hashlib.sha256(data).digest())


def raw_cid_of_digest(sha256: bytes) -> str:
    """``raw_cid`` of bytes whose SHA-256 ``sha256`` was computed elsewhere (a large file
    hashed as it is read, ``hashlib.file_digest``). Above 256 KiB this names the bytes as one
    raw block, not what ``ipfs add`` (which chunks) prints."""
    if len(sha256) != 32:
        raise ValueError(f"a SHA-256 digest is 32 bytes, got {len(sha256)}")
    return cid_from_bytes(_RAW_PREFIX + sha256)


def parse_cid(text: str) -> CID:
    """Parse a CID in any multibase (or a base58 CIDv0); raise ``InvalidCid`` with the reason."""
    if not text or len(text) > MAX_CID_STRING:
        raise InvalidCid(f"not a CID: expected 1-{MAX_CID_STRING} characters, got {len(text)}")
    try:
        return CID.decode(text)
    except Exception as exc:  # multiformats raises IndexError, TypeError, ... on hostile text;
        # every one of them means "not a CID"
        raise InvalidCid(f"not a CID: {text[:80]!r} ({type(exc).__name__}: {exc})") from exc


def canonical_cid_string(text: str) -> str:
    """A CID string in the node's canonical form: CIDv1 in base32 (CIDv0 stays base58btc)."""
    if len(text) == _FACT_CID_CHARS and text.startswith("b"):  # fast path: already canonical
        with contextlib.suppress(ValueError):
            raw = cid_to_bytes(text)
            if raw[:4] in (_DAG_CBOR_PREFIX, _RAW_PREFIX) and cid_from_bytes(raw) == text:
                return text
    return cid_string(parse_cid(text))


def canonical_cid_or_none(text: str) -> str | None:
    """``canonical_cid_string`` of ``text``, or None when it is no CID: for matching a CID a
    peer sends against the ones asked, where "no CID" is simply "not one of them"."""
    try:
        return canonical_cid_string(text)
    except InvalidCid:
        return None


def cid_string(cid: CID) -> str:
    """The canonical text of a parsed CID: base32 for CIDv1, base58btc for CIDv0."""
    return str(cid.set(base="base32")) if cid.version == 1 else str(cid)


def verify_block(cid: CID | str, data: bytes) -> bool:
    """True when ``data`` hashes to the multihash inside ``cid``."""
    parsed = parse_cid(cid) if isinstance(cid, str) else cid
    try:
        fn = multihash.get(parsed.hashfun.name)
    except KeyError:
        return False
    return bool(fn.digest(data) == parsed.digest)


def cid_to_bytes(cid: str) -> bytes:
    """Binary form of a canonical (base32, ``b``-prefixed) CIDv1 string; fast path for sync."""
    if not cid.startswith("b"):
        return bytes(CID.decode(cid))
    body = cid[1:].upper()
    return base64.b32decode(body + "=" * (-len(body) % 8))


def cid_from_bytes(data: bytes) -> str:
    """Canonical string (CIDv1, base32) of a binary CID."""
    return "b" + base64.b32encode(data).decode().lower().rstrip("=")
