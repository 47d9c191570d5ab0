"""CARv1 (Content Addressable aRchive), written and read with every block verified.

Format (https://ipld.io/specs/transport/car/carv1/): ``varint(len) DAG-CBOR header
{"roots": [CID], "version": 1}``, then per block ``varint(len(cid) + len(data)) cid data``.

This module owns CAR parsing and its invariants: a block comes out of a reader only after
its bytes hashed to its CID, and every CID (block or root) names a sha2-256 multihash, the
only hash the node computes; any other (identity, blake3, sha3, ...) is ``InvalidCar`` (400).
``CarStream`` is the push parser used while an upload arrives (it refuses a CAR at the first
bad section, holding at most one section in memory); ``read_car`` is the pull form over a file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

import dag_cbor
from multiformats import CID, varint

from node.cid import cid_string, verify_block
from node.errors import InvalidInput

#: Largest block the node accepts from a CAR (Kubo's own block limit is 1 MiB for bitswap).
MAX_BLOCK_BYTES = 2 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
#: Room for the CID in front of a block's data inside a section.
MAX_CID_BYTES = 128
#: The one multihash the node computes and accepts, with its digest size.
HASH = "sha2-256"
DIGEST_BYTES = 32
_READ_SIZE = 1 << 16


class InvalidCar(InvalidInput):
    code = "invalid_car"


def car_header(roots: Iterable[CID]) -> bytes:
    header = dag_cbor.encode({"roots": list(roots), "version": 1})
    return bytes(varint.encode(len(header))) + header


def car_section(cid: CID, data: bytes) -> bytes:
    raw = bytes(cid)
    return bytes(varint.encode(len(raw) + len(data))) + raw + data


def write_car(roots: Iterable[CID], blocks: Iterable[tuple[CID, bytes]]) -> Iterator[bytes]:
    """Yield a CARv1 as chunks: the header, then one section per block."""
    yield car_header(roots)
    for cid, data in blocks:
        yield car_section(cid, data)


def supported_hash(cid: CID) -> bool:
    """True when ``cid`` names a sha2-256 digest (32 bytes), the node's only hash."""
    return bool(cid.hashfun.name == HASH and len(cid.raw_digest) == DIGEST_BYTES)


def require_supported_hash(cid: CID, what: str) -> None:
    if not supported_hash(cid):
        raise InvalidCar(
            f"{what} uses the hash {cid.hashfun.name}: this node accepts only {HASH} blocks"
        )


def _varint(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(value, bytes used) of the unsigned varint at ``pos``; None when ``data`` ends inside it.
    ``InvalidCar`` when it is longer than 9 bytes (over 2**63)."""
    value = 0
    for i in range(9):
        if pos + i >= len(data):
            return None
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, i + 1
    raise InvalidCar("CAR length prefix is too long")


def _cid_length(section: bytes | bytearray) -> int | None:
    """Length of the binary CID at the start of ``section``; None when it is cut short."""
    if section[:2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
        return 34
    if len(section) < 2:
        return None
    pos = 0
    for _ in range(3):  # version, codec, multihash code
        got = _varint(section, pos)
        if got is None:
            return None
        pos += got[1]
    got = _varint(section, pos)
    if got is None:
        return None
    return pos + got[1] + got[0]


def split_cid(section: bytes) -> tuple[CID, bytes]:
    """Split a CAR section into its binary CID and the block data after it."""
    end = _cid_length(section)
    if end is None or end > len(section):
        raise ValueError("CID runs past the end of the section")
    return CID.decode(bytes(section[:end])), section[end:]


class CarStream:
    """A CARv1 parsed as its bytes arrive: ``feed`` returns the blocks each chunk completes,
    verified; it raises ``InvalidCar`` as soon as the bytes received prove the CAR bad (a
    malformed header, an oversized section, a CID that is malformed or not sha2-256, a block
    that does not hash to its CID). ``close`` raises when the CAR stops inside a section."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # bytes of _buf already parsed (dropped at the next feed)
        self.roots: list[CID] | None = None
        #: Blocks verified so far.
        self.blocks = 0
        self._section_cid: CID | None = None

    def feed(self, data: bytes) -> list[tuple[CID, bytes]]:
        """Take ``data``; return the blocks it completes, each verified."""
        self.push(data)
        out: list[tuple[CID, bytes]] = []
        while (block := self.next_block()) is not None:
            out.append(block)
        return out

    def push(self, data: bytes) -> None:
        del self._buf[: self._pos]
        self._pos = 0
        self._buf += data

    def read_header(self) -> bool:
        """Parse the header if its bytes are in; True once it is."""
        return self.roots is not None or self._header()

    def next_block(self) -> tuple[CID, bytes] | None:
        """The next verified block, or None until more bytes are pushed (the header first)."""
        if not self.read_header():
            return None
        return self._section()

    def close(self) -> None:
        if self.roots is None:
            raise InvalidCar("not a CAR file: it ends inside or before its header")
        left = len(self._buf) - self._pos
        if left:
            raise InvalidCar(f"CAR ends inside block {self.blocks} ({left} bytes of it received)")

    def _header(self) -> bool:
        got = _varint(self._buf, self._pos)
        if got is None:
            return False
        size, used = got
        if size == 0 or size > MAX_HEADER_BYTES:
            raise InvalidCar("not a CAR file: missing or oversized header")
        start = self._pos + used
        if len(self._buf) < start + size:
            return False
        raw = bytes(self._buf[start : start + size])
        self._pos = start + size
        self.roots = parse_header(raw)
        return True

    def _section(self) -> tuple[CID, bytes] | None:
        got = _varint(self._buf, self._pos)
        if got is None:
            return None
        size, used = got
        if size == 0 or size > MAX_BLOCK_BYTES + MAX_CID_BYTES:
            raise InvalidCar(f"block {self.blocks} is {size} bytes, not within 1-{MAX_BLOCK_BYTES}")
        start = self._pos + used
        available = min(size, len(self._buf) - start)
        if self._section_cid is None:
            head = self._buf[start : start + min(available, MAX_CID_BYTES)]
            self._section_cid = self._cid(head, complete=available == size)
            if self._section_cid is None:
                return None
        if available < size:
            return None
        cid = self._section_cid
        data = bytes(self._buf[start + len(bytes(cid)) : start + size])
        if not verify_block(cid, data):
            raise InvalidCar(
                f"block {self.blocks} ({cid_string(cid)}) does not match its CID: corrupt"
            )
        self._pos = start + size
        self._section_cid = None
        self.blocks += 1
        return cid, data

    def _cid(self, body: bytearray, *, complete: bool) -> CID | None:
        """The section's CID once its bytes are in, checked (hash function included)."""
        try:
            end = _cid_length(body)
            if end is None or end > len(body):
                if complete or len(body) >= MAX_CID_BYTES:
                    raise ValueError("the CID runs past the end of the section")
                return None
            cid = CID.decode(bytes(body[:end]))
        except (ValueError, KeyError, IndexError) as exc:
            raise InvalidCar(f"block {self.blocks} does not start with a valid CID: {exc}") from exc
        require_supported_hash(cid, f"block {self.blocks} ({cid})")
        return cid


def parse_header(raw: bytes) -> list[CID]:
    """The roots of a CARv1 header (the DAG-CBOR map after the length prefix)."""
    try:
        header = dag_cbor.decode(raw)
    except Exception as exc:  # dag_cbor raises several types on bad input
        raise InvalidCar(f"CAR header is not DAG-CBOR: {exc}") from exc
    if not isinstance(header, dict) or type(header.get("version")) is not int:
        raise InvalidCar("only CARv1 is supported (header version must be 1)")
    if header["version"] != 1:
        raise InvalidCar("only CARv1 is supported (header version must be 1)")
    roots = header.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, CID) for r in roots):
        raise InvalidCar("CAR header roots must be a list of CIDs")
    out = [r for r in roots if isinstance(r, CID)]
    for root in out:
        require_supported_hash(root, f"root {root}")
    return out


def read_car(stream: BinaryIO) -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """Parse a CARv1; the iterator raises ``InvalidCar`` at the first bad or corrupt block."""
    parser = CarStream()
    while parser.roots is None:
        chunk = stream.read(_READ_SIZE)
        if not chunk:
            parser.close()
        parser.push(chunk)
        parser.read_header()
    return parser.roots, _blocks(stream, parser)


def _blocks(stream: BinaryIO, parser: CarStream) -> Iterator[tuple[CID, bytes]]:
    while True:
        block = parser.next_block()
        if block is not None:
            yield block
            continue
        chunk = stream.read(_READ_SIZE)
        if not chunk:
            parser.close()
            return
        parser.push(chunk)
