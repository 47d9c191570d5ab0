"""The keyword index's file: the live documents' forward index, checksummed, written
atomically and read back whole or not at all (``index.bm25_index`` saves and loads through it).

What it owns
    The on-disk format, its versions and its failure modes. A file is a header (``HEADER``:
    ``MAGIC``, ``FORMAT_VERSION``, ``index.bm25_tokens.TOKENIZER_VERSION``, body length,
    SHA-256 of the body), then the body: a ``<I`` length and a JSON table of contents (Python's
    Unicode version, the document and term counts, each array's name, dtype and length), then
    the arrays of a ``Forward`` (little-endian, each 8-byte aligned): ``ids``, ``fwd_off``,
    ``fwd_terms``, ``fwd_tf``, and the terms as ``term_len`` plus ``term_bytes`` (UTF-8, lone
    surrogates kept). No postings, document frequencies or lengths: the index derives those
    from the forward index on load.

Invariants
    - ``write`` goes to a temp file in the same directory, fsyncs it, ``os.replace``s the old
      file and fsyncs the directory: a reader sees the old file or the new one, never a mix.
      An ``OSError`` becomes ``StorageError``.
    - ``read`` verifies the header, the length and the checksum, then every array: ids
      strictly increasing, offsets monotone from 0 to the entry count, term ids in range,
      frequencies >= 1, terms non-empty, valid UTF-8 and distinct. Another format, tokenizer
      or Unicode version is refused too. A file loads whole or raises ``CorruptIndex``, which
      means "rebuild from the catalog", never a wrong answer.
    - The arrays of a ``Forward`` that ``read`` returns may be read-only views into the
      file's bytes: whoever keeps them copies them.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import unicodedata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from index.bm25_tokens import TOKENIZER_VERSION
from index.durable import fsync_dir
from node.errors import StorageError

FORMAT_VERSION = 1
MAGIC = b"KHBM25\r\n"
HEADER = struct.Struct("<8sIIQ32s")  # magic, format, tokenizer, body length, sha256(body)

IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]


class CorruptIndex(StorageError):
    """The index file is missing, torn, corrupt or of another version: rebuild it."""


class Forward(NamedTuple):
    """Documents as the file holds them: document ``d`` is ``ids[d]``, and its distinct terms
    ``terms[fwd_terms[j]]`` with frequencies ``fwd_tf[j]`` for ``fwd_off[d] <= j <
    fwd_off[d + 1]``."""

    ids: IntArray
    fwd_off: IntArray
    fwd_terms: Int32Array
    fwd_tf: Int32Array
    terms: list[str]


def _encode(forward: Forward) -> tuple[bytes, bytes]:
    """The file's header and body for these documents."""
    ids, fwd_off, fwd_terms, fwd_tf, terms = forward
    encoded = [t.encode("utf-8", "surrogatepass") for t in terms]
    arrays: list[tuple[str, npt.NDArray[Any]]] = [
        ("ids", ids.astype("<i8")),
        ("fwd_off", fwd_off.astype("<i8")),
        ("fwd_terms", fwd_terms.astype("<i4")),
        ("fwd_tf", fwd_tf.astype("<i4")),
        ("term_len", np.fromiter(map(len, encoded), dtype="<i4", count=len(encoded))),
        ("term_bytes", np.frombuffer(b"".join(encoded), dtype=np.uint8)),
    ]
    toc = {
        "unicode": unicodedata.unidata_version,  # the tokenizer's tables come from it
        "documents": len(ids),
        "terms": len(terms),
        "arrays": [[name, a.dtype.str, len(a)] for name, a in arrays],
    }
    meta = json.dumps(toc, sort_keys=True).encode()
    parts = [struct.pack("<I", len(meta)), meta]
    size = 4 + len(meta)
    for _, a in arrays:
        pad = -size % 8
        parts += [b"\0" * pad, a.tobytes()]
        size += pad + a.nbytes
    body = b"".join(parts)
    digest = hashlib.sha256(body).digest()
    header = HEADER.pack(MAGIC, FORMAT_VERSION, TOKENIZER_VERSION, len(body), digest)
    return header, body


def write(path: Path, forward: Forward) -> None:
    """Save these documents at ``path``, atomically and durably."""
    header, body = _encode(forward)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(header)
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot save the keyword index to {path}: {exc}") from exc


def read(path: Path) -> Forward:
    """The documents saved at ``path``; ``CorruptIndex`` when the file is missing, torn,
    corrupt, or of another format, tokenizer or Unicode version."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptIndex(f"cannot read keyword index {path}: {exc}") from exc
    try:
        return _decode(data)
    except CorruptIndex as exc:
        raise CorruptIndex(f"keyword index {path}: {exc.message}") from exc


def _decode(data: bytes) -> Forward:
    """A saved file's forward index, every part checked."""
    if len(data) < HEADER.size:
        raise CorruptIndex("file is shorter than its header (torn write?)")
    magic, version, tokenizer, body_len, digest = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptIndex("not a keyword index file")
    if version != FORMAT_VERSION:
        raise CorruptIndex(f"format version {version}, this node reads {FORMAT_VERSION}")
    if tokenizer != TOKENIZER_VERSION:
        raise CorruptIndex(f"tokenizer version {tokenizer}, this node has {TOKENIZER_VERSION}")
    body = memoryview(data)[HEADER.size :]
    if len(body) != body_len:
        raise CorruptIndex(f"body is {len(body)} bytes, the header says {body_len} (torn?)")
    if hashlib.sha256(body).digest() != digest:
        raise CorruptIndex("checksum mismatch")
    try:
        (meta_len,) = struct.unpack_from("<I", body)
        toc = json.loads(bytes(body[4 : 4 + meta_len]))
        offset = 4 + meta_len
        arrays: dict[str, npt.NDArray[Any]] = {}
        for name, dtype, count in toc["arrays"]:
            offset += -offset % 8
            kind = np.dtype(dtype)
            arrays[str(name)] = np.frombuffer(body, dtype=kind, count=int(count), offset=offset)
            offset += kind.itemsize * int(count)
        # views into the file's bytes: whoever keeps them copies them
        ids = arrays["ids"].astype(np.int64, copy=False)
        fwd_off = arrays["fwd_off"].astype(np.int64, copy=False)
        fwd_terms = arrays["fwd_terms"].astype(np.int32, copy=False)
        fwd_tf = arrays["fwd_tf"].astype(np.int32, copy=False)
        term_len = arrays["term_len"].astype(np.int64)
        term_bytes = arrays["term_bytes"].tobytes()
        n_docs, n_terms = int(toc["documents"]), int(toc["terms"])
        unicode_version = str(toc["unicode"])
    except (KeyError, ValueError, TypeError, struct.error) as exc:
        raise CorruptIndex(f"unreadable table of contents: {exc}") from exc
    if unicode_version != unicodedata.unidata_version:
        raise CorruptIndex(
            f"tokenized with Unicode {unicode_version}, this Python has "
            f"{unicodedata.unidata_version}"
        )
    if len(ids) != n_docs or len(fwd_off) != n_docs + 1 or len(term_len) != n_terms:
        raise CorruptIndex("array lengths disagree with the table of contents")
    if n_docs > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        raise CorruptIndex("ids are not strictly increasing")
    if fwd_off[0] != 0 or fwd_off[-1] != len(fwd_terms) or bool(np.any(np.diff(fwd_off) < 0)):
        raise CorruptIndex("document offsets are inconsistent")
    if len(fwd_tf) != len(fwd_terms):
        raise CorruptIndex("term and frequency arrays differ in length")
    if len(fwd_terms) and (
        int(fwd_terms.min()) < 0 or int(fwd_terms.max()) >= n_terms or int(fwd_tf.min()) < 1
    ):
        raise CorruptIndex("a term id or frequency is out of range")
    if int(term_len.sum()) != len(term_bytes) or (n_terms and int(term_len.min()) < 1):
        raise CorruptIndex("the term table is inconsistent")
    ends = np.cumsum(term_len).tolist()
    try:
        terms = [
            term_bytes[a:b].decode("utf-8", "surrogatepass")
            for a, b in zip([0, *ends][:-1], ends, strict=True)
        ]
    except UnicodeDecodeError as exc:
        raise CorruptIndex(f"a term is not UTF-8: {exc}") from exc
    if len(set(terms)) != n_terms:
        raise CorruptIndex("duplicate terms")
    return Forward(ids, fwd_off, fwd_terms, fwd_tf, terms)
