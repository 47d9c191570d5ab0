"""The fact record, its canonical DAG-CBOR bytes and its CID.

A fact is the DAG-CBOR map ``{"v": 1, "text", "metadata", "contributor"}``, or, when it
corrects an earlier fact of the same contributor or belongs to a collection other than the
default one, ``{"v": 2, ..., "supersedes": <CID string>, "collection": <name>}`` with either
key or both (version 2 exists only with one of them, so every version-1 record and its CID
stay exactly as they were). A fact belongs to one collection: a record without the key is in
``"default"``, which is never written (a record spelling ``"collection": "default"`` is not
canonical), so each fact has one CID. Nothing time-dependent is inside, so the same submission
always has the same CID: contributing is idempotent, and any IPFS implementation derives the same
identifier from the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias

import dag_cbor
from eth_utils.address import is_checksum_address

from node.cid import DAG_CBOR, cid_string, dag_cbor_cid, parse_cid
from node.errors import InvalidFact, KnowhubError
from node.limits import (
    MAX_COLLECTION_CHARS,
    MAX_METADATA_BYTES,
    MAX_METADATA_KEY_CHARS,
    MAX_TEXT_BYTES,
)
from node.records import RecordKind, decode_map

RECORD_VERSION = 1
#: The version of a record that supersedes an earlier one or names a collection (it has the
#: ``supersedes`` key, the ``collection`` key or both).
SUPERSEDING_VERSION = 2
#: The collection of a record without the ``collection`` key (never written).
DEFAULT_COLLECTION = "default"
#: A collection's name (``MAX_COLLECTION_CHARS`` at most): the one home of this rule.
COLLECTION_PATTERN = "^[a-z0-9][a-z0-9._-]*$"
#: Fact records carry no ``kind`` key (they predate kinds): a map without one is a fact.
FACT_KIND_NAME = "fact"
#: The largest canonical fact block: text, metadata and the fixed fields.
MAX_FACT_BLOCK = MAX_TEXT_BYTES + MAX_METADATA_BYTES + 256
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

MetadataValue: TypeAlias = str | int | bool | tuple[str, ...]
Metadata: TypeAlias = Mapping[str, MetadataValue]

_RECORD_KEYS = frozenset({"v", "text", "metadata", "contributor"})
_OPTIONAL_KEYS = frozenset({"supersedes", "collection"})
_COLLECTION_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
#: Unicode categories that draw nothing: controls, format characters (zero-width space and
#: joiners, BOM, bidi marks), surrogates and separators (spaces, line and paragraph breaks).
#: Unassigned code points count as visible: they render as a replacement glyph.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})


def text_key(text: str) -> str:
    """The key two texts share when they say the same words: NFKC, case-folded, every run of
    non-word characters (punctuation, spaces) made one space, trimmed; hashed (sha256, 32 hex
    digits). "Vitamin C cures flu." and "vitamin c  CURES flu!" share one; "Vitamin C cures
    the flu" does not. The node links a fact to the first stored fact with its key
    (``index.sqlite_duplicates``)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    words = _NON_WORD.sub(" ", folded).strip()
    return hashlib.sha256(words.encode("utf-8", "surrogatepass")).hexdigest()[:32]


_NON_WORD = re.compile(r"[\W_]+")


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
    #: The earlier fact of the same contributor this one corrects (a version-2 record).
    supersedes: str | None = None
    #: The collection the fact belongs to (a version-2 record unless the default).
    collection: str = DEFAULT_COLLECTION

    @property
    def kind(self) -> str:
        return FACT_KIND_NAME

    def record(self) -> dict[str, Any]:
        """The record as plain JSON-compatible data (lists for list values)."""
        return record_map(
            self.text, self.metadata, self.contributor, self.supersedes, self.collection
        )


def record_map(
    text: str,
    metadata: Metadata,
    contributor: str | None,
    supersedes: str | None,
    collection: str = DEFAULT_COLLECTION,
) -> dict[str, Any]:
    """A fact record's map (version 1, or 2 with ``supersedes`` or a collection other than the
    default), JSON-compatible."""
    plain = supersedes is None and collection == DEFAULT_COLLECTION
    out: dict[str, Any] = {
        "v": RECORD_VERSION if plain else SUPERSEDING_VERSION,
        "text": text,
        "metadata": metadata_to_json(metadata),
        "contributor": contributor,
    }
    if supersedes is not None:
        out["supersedes"] = supersedes
    if collection != DEFAULT_COLLECTION:
        out["collection"] = collection
    return out


def check_collection(value: Any, field: str = "collection") -> str:
    """A collection's name: 1-``MAX_COLLECTION_CHARS`` characters of ``[a-z0-9][a-z0-9._-]*``;
    ``InvalidFact`` naming ``field`` otherwise. ``"default"`` is a valid name (the record
    decoder refuses it spelled out)."""
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_COLLECTION_CHARS
        or _COLLECTION_RE.fullmatch(value) is None
    ):
        raise InvalidFact(
            f"a collection is 1-{MAX_COLLECTION_CHARS} characters of lower-case letters, "
            "digits, '.', '_' and '-', starting with a letter or digit",
            field=field,
        )
    return value


def metadata_to_json(metadata: Metadata) -> dict[str, str | int | bool | list[str]]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in metadata.items()}


def metadata_json_string(metadata: Metadata) -> str:
    """Stable JSON text for storage (sorted keys, no whitespace, UTF-8 kept)."""
    return json.dumps(
        metadata_to_json(metadata), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def make_fact(
    text: Any,
    metadata: Any = None,
    contributor: Any = None,
    supersedes: Any = None,
    collection: Any = DEFAULT_COLLECTION,
) -> Fact:
    """Validate a submission and build its canonical record.

    Raises ``InvalidFact`` naming the problem and the field.
    """
    clean_text = _check_text(text)
    clean_meta = _check_metadata({} if metadata is None else metadata)
    clean_contributor = _check_contributor(contributor)
    clean_collection = check_collection(collection)
    earlier = None
    if supersedes is not None:
        earlier = check_fact_cid(supersedes, "supersedes")
        if clean_contributor is None:
            raise InvalidFact(
                "a fact that supersedes another names its contributor (the earlier fact's)",
                field="contributor",
            )
    block = dag_cbor.encode(
        record_map(clean_text, clean_meta, clean_contributor, earlier, clean_collection)
    )
    cid = dag_cbor_cid(block)
    return Fact(clean_text, clean_meta, clean_contributor, block, cid, earlier, clean_collection)


def check_fact_cid(value: Any, field: str) -> str:
    """A fact's CID (any multibase of a CIDv1 dag-cbor sha2-256) as its canonical string;
    ``InvalidFact`` naming ``field`` otherwise."""
    if not isinstance(value, str):
        raise InvalidFact(f"{field} must be a fact CID string", field=field)
    try:
        parsed = parse_cid(value)
    except KnowhubError as exc:
        raise InvalidFact(f"{field} is not a CID: {exc.message}", field=field) from exc
    if parsed.version != 1 or parsed.codec.name != DAG_CBOR or parsed.hashfun.name != "sha2-256":
        raise InvalidFact(f"{field} must name a fact: a CIDv1 dag-cbor sha2-256", field=field)
    return cid_string(parsed)


def decode_fact(block: bytes) -> Fact:
    """Parse and validate a fact block received from elsewhere (a peer, a CAR file).

    The bytes must be the canonical encoding of a valid record: re-encoding gives them back.
    """
    return fact_from_map(decode_map(block, MAX_FACT_BLOCK, "fact"), block)


def fact_from_map(record: Mapping[str, Any], block: bytes) -> Fact:
    """A fact from its decoded DAG-CBOR map and block (the fact row of ``node.kinds``)."""
    keys = set(record)
    if not keys >= _RECORD_KEYS or not keys - _RECORD_KEYS <= _OPTIONAL_KEYS:
        raise InvalidFact(
            "fact block must be a map with exactly v, text, metadata, contributor "
            "(and supersedes, collection or both, in version 2)"
        )
    version = record["v"]
    want = RECORD_VERSION if keys == _RECORD_KEYS else SUPERSEDING_VERSION
    if type(version) is not int or version != want:  # not 1.0, not True
        raise InvalidFact(
            f"unsupported fact record version {version!r} for these fields (want {want})",
            field="v",
        )
    supersedes = record.get("supersedes")
    if "collection" in record and record["collection"] == DEFAULT_COLLECTION:
        raise InvalidFact(
            'the default collection is never written: a record without "collection" is in it',
            field="collection",
        )
    collection = record.get("collection", DEFAULT_COLLECTION)
    fact = make_fact(
        record["text"], record["metadata"], record["contributor"], supersedes, collection
    )
    if fact.block != block or fact.supersedes != supersedes:
        raise InvalidFact("fact block is not in canonical DAG-CBOR form")
    return fact


def _subject(fact: Fact) -> str | None:
    return fact.supersedes


FACT = RecordKind(FACT_KIND_NAME, fact_from_map, MAX_FACT_BLOCK, _subject)


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
