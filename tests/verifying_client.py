"""A minimal trustless-gateway client written from the specs, sharing no code with the node:
it decodes CIDs (base32 CIDv1, sha2-256), hashes every byte it receives and parses CARv1."""

from __future__ import annotations

import base64
import hashlib

import httpx

SHA2_256 = 0x12


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def decode_cid(text: str) -> tuple[int, bytes, bytes]:
    """(codec, sha256 digest, binary CID) of a base32 CIDv1 string."""
    if not text.startswith("b"):
        raise ValueError("this client reads base32 CIDv1 only")
    body = text[1:].upper()
    binary = base64.b32decode(body + "=" * (-len(body) % 8))
    version, pos = _varint(binary, 0)
    codec, pos = _varint(binary, pos)
    hash_code, pos = _varint(binary, pos)
    length, pos = _varint(binary, pos)
    if version != 1 or hash_code != SHA2_256 or length != 32:
        raise ValueError("expected CIDv1 with sha2-256")
    return codec, binary[pos : pos + 32], binary


def cid_of(codec: int, data: bytes) -> str:
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    binary = b"\x01" + varint(codec) + b"\x12\x20" + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


def fetch_block(base_url: str, cid: str) -> bytes:
    response = httpx.get(f"{base_url}/ipfs/{cid}", headers={"Accept": "application/vnd.ipld.raw"})
    response.raise_for_status()
    _codec, digest, _ = decode_cid(cid)
    if hashlib.sha256(response.content).digest() != digest:
        raise ValueError(f"gateway sent bytes that do not hash to {cid}")
    return response.content


def parse_car(data: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(raw header, [(cid, block)]) with every block verified against its CID."""
    header_len, pos = _varint(data, 0)
    header = data[pos : pos + header_len]
    pos += header_len
    blocks = []
    while pos < len(data):
        size, pos = _varint(data, pos)
        section = data[pos : pos + size]
        pos += size
        version, p = _varint(section, 0)
        _codec, p = _varint(section, p)
        hash_code, p = _varint(section, p)
        length, p = _varint(section, p)
        binary, block = section[: p + length], section[p + length :]
        digest = binary[p : p + length]
        if version != 1 or hash_code != SHA2_256 or hashlib.sha256(block).digest() != digest:
            raise ValueError("CAR block does not match its CID")
        cid = "b" + base64.b32encode(binary).decode().lower().rstrip("=")
        blocks.append((cid, block))
    return header, blocks
