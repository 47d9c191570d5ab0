"""CARv1 (Content Addressable aRchive), written and read with every block verified.

Format (https://ipld.io/specs/transport/car/carv1/): ``varint(len) DAG-CBOR header
{"roots": [CID], "version": 1}``, then per block ``varint(len(cid) + len(data)) cid data``.
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


def split_cid(section: bytes) -> tuple[CID, bytes]:
    """Split a CAR section into its binary CID and the block data after it."""
    if section[:2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
        return CID.decode(section[:34]), section[34:]
    pos = 0
    for _ in range(3):  # version, codec, multihash code
        _, used, _ = varint.decode_raw(section[pos:])
        pos += used
    digest_len, used, _ = varint.decode_raw(section[pos:])
    end = pos + used + digest_len
    if end > len(section):
        raise ValueError("CID digest runs past the end of the section")
    return CID.decode(section[:end]), section[end:]


def _read_varint(stream: BinaryIO) -> int | None:
    shift = 0
    value = 0
    for i in range(10):
        byte = stream.read(1)
        if not byte:
            if i == 0:
                return None
            raise InvalidCar("CAR ends inside a length prefix")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
    raise InvalidCar("CAR length prefix is too long")


def _read_exact(stream: BinaryIO, size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise InvalidCar(f"CAR ends inside {what} (wanted {size} bytes, got {len(data)})")
    return data


def read_car(stream: BinaryIO) -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """Parse a CARv1; the iterator raises ``InvalidCar`` at the first bad or corrupt block."""
    size = _read_varint(stream)
    if size is None or size == 0 or size > MAX_HEADER_BYTES:
        raise InvalidCar("not a CAR file: missing or oversized header")
    try:
        header = dag_cbor.decode(_read_exact(stream, size, "the header"))
    except InvalidCar:
        raise
    except Exception as exc:  # dag_cbor raises several types on bad input
        raise InvalidCar(f"CAR header is not DAG-CBOR: {exc}") from exc
    if not isinstance(header, dict) or header.get("version") != 1:
        raise InvalidCar("only CARv1 is supported (header version must be 1)")
    roots = header.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, CID) for r in roots):
        raise InvalidCar("CAR header roots must be a list of CIDs")
    return [r for r in roots if isinstance(r, CID)], _blocks(stream)


def _blocks(stream: BinaryIO) -> Iterator[tuple[CID, bytes]]:
    index = 0
    while True:
        size = _read_varint(stream)
        if size is None:
            return
        if size > MAX_BLOCK_BYTES + 128:
            raise InvalidCar(f"block {index} is {size} bytes, over the limit")
        section = _read_exact(stream, size, f"block {index}")
        try:
            cid, data = split_cid(section)
        except (ValueError, KeyError, IndexError) as exc:
            raise InvalidCar(f"block {index} does not start with a valid CID: {exc}") from exc
        if not verify_block(cid, data):
            raise InvalidCar(f"block {index} ({cid_string(cid)}) does not match its CID: corrupt")
        yield cid, data
        index += 1
