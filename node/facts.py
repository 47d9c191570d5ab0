"""The fact record, its canonical DAG-CBOR bytes and its CID.

A fact is the DAG-CBOR map ``{"v": 1, "text", "metadata", "contributor"}``. Nothing
time-dependent is inside, so the same submission always has the same CID: contributing is
idempotent, and any IPFS implementation derives the same identifier from the same bytes.
"""

from __future__ import annotations

import functools
import json
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias

import dag_cbor
from eth_utils.address import is_checksum_address

from node.cid import dag_cbor_cid
from node.errors import InvalidFact
from node.limits import MAX_METADATA_BYTES, MAX_METADATA_KEY_CHARS, MAX_TEXT_BYTES
from node.records import RecordKind, decode_map

RECORD_VERSION = 1
#: Fact records carry no ``kind`` key (they predate kinds): a map without one is a fact.
FACT_KIND_NAME = "fact"
#: The largest canonical fact block: text, metadata and the fixed fields.
MAX_FACT_BLOCK = MAX_TEXT_BYTES + MAX_METADATA_BYTES + 256
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

MetadataValue: TypeAlias = str | int | bool | tuple[str, ...]
Metadata: TypeAlias = Mapping[str, MetadataValue]

_RECORD_KEYS = frozenset({"v", "text", "metadata", "contributor"})
#: Unicode categories that draw nothing: controls, format characters (zero-width space and
#: joiners, BOM, bidi marks), surrogates and separators (spaces, line and paragraph breaks).
#: Unassigned code points count as visible: they render as a replacement glyph.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})


def has_visible_character(text: str) -> bool:
    """True when ``text`` holds at least one character that draws something: a text made only
    of whitespace, NUL, BOM or zero-width characters is not a fact (nor a query)."""
    return any(unicodedata.category(ch) not in _INVISIBLE for ch in text)


@functools.cache
def visible_character_pattern() -> str:
    """A regular expression that finds a visible character: the rule of
    :func:`has_visible_character` as one character class, for the API's schema."""
    # surrogates are left out: no valid UTF-8 string holds one (the text check refuses a lone
    # surrogate before this rule) and regex engines cannot name them
    invisible = _INVISIBLE - {"Cs"}
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)) in invisible:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))

    def esc(code: int) -> str:  # ECMA-262 has no \U escape: astral characters go literally
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    parts = [esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges]
    return "[^" + "".join(parts) + "]"


@dataclass(frozen=True, slots=True)
class Fact:
    """A validated fact. Build it with :func:`make_fact` or :func:`decode_fact`."""

    text: str
    metadata: Metadata
    contributor: str | None
    block: bytes
    cid: str

    @property
    def kind(self) -> str:
        return FACT_KIND_NAME

    def record(self) -> dict[str, Any]:
        """The record as plain JSON-compatible data (lists for list values)."""
        return {
            "v": RECORD_VERSION,
            "text": self.text,
            "metadata": metadata_to_json(self.metadata),
            "contributor": self.contributor,
        }


def metadata_to_json(metadata: Metadata) -> dict[str, str | int | bool | list[str]]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in metadata.items()}


def metadata_json_string(metadata: Metadata) -> str:
    """Stable JSON text for storage (sorted keys, no whitespace, UTF-8 kept)."""
    return json.dumps(
        metadata_to_json(metadata), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def make_fact(text: Any, metadata: Any = None, contributor: Any = None) -> Fact:
    """Validate a submission and build its canonical record.

    Raises ``InvalidFact`` naming the problem and the field.
    """
    clean_text = _check_text(text)
    clean_meta = _check_metadata({} if metadata is None else metadata)
    clean_contributor = _check_contributor(contributor)
    block = dag_cbor.encode(
        {
            "v": RECORD_VERSION,
            "text": clean_text,
            "metadata": {k: list(v) if isinstance(v, tuple) else v for k, v in clean_meta.items()},
            "contributor": clean_contributor,
        }
    )
    return Fact(clean_text, clean_meta, clean_contributor, block, dag_cbor_cid(block))


def decode_fact(block: bytes) -> Fact:
    """Parse and validate a fact block received from elsewhere (a peer, a CAR file).

    The bytes must be the canonical encoding of a valid record: re-encoding gives them back.
    """
    return fact_from_map(decode_map(block, MAX_FACT_BLOCK, "fact"), block)


def fact_from_map(record: Mapping[str, Any], block: bytes) -> Fact:
    """A fact from its decoded DAG-CBOR map and block (the fact row of ``node.kinds``)."""
    if set(record) != _RECORD_KEYS:
        raise InvalidFact("fact block must be a map with exactly v, text, metadata, contributor")
    if type(record["v"]) is not int or record["v"] != RECORD_VERSION:  # not 1.0, not True
        raise InvalidFact(f"unsupported fact record version {record['v']!r}", field="v")
    fact = make_fact(record["text"], record["metadata"], record["contributor"])
    if fact.block != block:
        raise InvalidFact("fact block is not in canonical DAG-CBOR form")
    return fact


FACT = RecordKind(FACT_KIND_NAME, fact_from_map, MAX_FACT_BLOCK, lambda _fact: None)


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise InvalidFact("text must be a string", field="text")
    size = _utf8_size(text, "text")
    if size > MAX_TEXT_BYTES:
        raise InvalidFact(
            f"text is {size} bytes of UTF-8, over the limit of {MAX_TEXT_BYTES}", field="text"
        )
    if not has_visible_character(text):
        raise InvalidFact(
            "text must hold a visible character (not only whitespace, control or zero-width "
            "characters)",
            field="text",
        )
    return text


def _utf8_size(value: str, field: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidFact(f"{field} is not valid Unicode (lone surrogate)", field=field) from exc


def _check_metadata(metadata: Any) -> Metadata:
    if not isinstance(metadata, Mapping):
        raise InvalidFact("metadata must be an object", field="metadata")
    clean: dict[str, MetadataValue] = {}
    for key, value in metadata.items():
        where = f"metadata.{key}"
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY_CHARS:
            raise InvalidFact(
                f"metadata keys must be strings of 1-{MAX_METADATA_KEY_CHARS} characters",
                field="metadata",
            )
        _utf8_size(key, where)
        if key.startswith("$"):
            raise InvalidFact("metadata keys must not start with '$' (reserved)", field=where)
        clean[key] = _check_value(value, where)
    encoded = dag_cbor.encode({k: list(v) if isinstance(v, tuple) else v for k, v in clean.items()})
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidFact(
            f"metadata is {len(encoded)} bytes encoded, over the limit of {MAX_METADATA_BYTES}",
            field="metadata",
        )
    return MappingProxyType(dict(sorted(clean.items())))


def _check_value(value: Any, where: str) -> MetadataValue:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidFact("metadata integers must fit in 64 bits", field=where)
        return value
    if isinstance(value, str):
        _utf8_size(value, where)
        return value
    if isinstance(value, list | tuple):
        items = []
        for item in value:
            if not isinstance(item, str):
                raise InvalidFact("metadata lists may hold only strings", field=where)
            _utf8_size(item, where)
            items.append(item)
        return tuple(items)
    raise InvalidFact(
        f"metadata values must be a string, integer, boolean or list of strings, "
        f"not {type(value).__name__}",
        field=where,
    )


def _check_contributor(contributor: Any) -> str | None:
    if contributor is None:
        return None
    if not isinstance(contributor, str) or not is_checksum_address(contributor):
        raise InvalidFact(
            "contributor must be a checksummed 0x address (EIP-55) or null", field="contributor"
        )
    return contributor
