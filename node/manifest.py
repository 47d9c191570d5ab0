"""Manifests: DAG-CBOR objects that list fact CIDs, so a set of facts is one CID.

A leaf manifest is ``{"v": 1, "type": "knowhub/manifest", "count": n, "facts": [link, ...]}``
with at most ``LEAF_SIZE`` facts; a larger set is a tree whose inner nodes carry
``"children": [link, ...]`` instead of ``"facts"``. Links are real IPLD links (CBOR tag 42),
so ``ipfs dag export <manifest>`` of Kubo returns the manifest and every fact it names. Facts are
sorted by CID string before chunking: the same set of facts always gives the same root CID.

Two kinds are built from the same shape. **Batch manifests** (``build_manifest``, written by
anchoring; their CIDs are on chain) are exactly the objects above, byte for byte as they have
always been. **Snapshot manifests** (``build_snapshot_manifest``, what ``knowhub export``
carries) add to every leaf ``"signatures": [bytes(65), ...]``, parallel to ``"facts"``: the
contributor's EIP-191 signature ``r || s || v`` (v 27/28) of each fact's CID, so facts travel
with their provenance. The same set of signed facts always gives the same snapshot root.

Records of every kind (``node.kinds``) are listed under ``facts`` (the key keeps its first
name). When a leaf lists a record that is not a fact, the leaf says which kind each entry is:
``"kinds": [str, ...]``, parallel to ``"facts"``; a leaf of facts only has no ``kinds``, so
every manifest built before kinds existed is still the canonical one for its facts.

When a leaf lists a fact of a collection other than ``default`` (``node.collections``), the
leaf says each entry's collection: ``"collections": [str | null, ...]``, parallel to
``"facts"``: the fact's collection, null for a record of another kind. A node holding some
collections rebuilds from the chain only the facts it holds (``node.follower``); a leaf of
``default`` facts only has no ``collections``, so every manifest of such facts built before
this field is still the canonical one. A leaf without the field is read as naming no
collection (one anchored before the field existed may list facts of any): a follower fetches
all of its facts. The names are the anchoring node's word, a hint of what to fetch: a
record's own ``collection`` field is the truth.

Field sets are closed: a leaf has exactly ``v, type, count, facts`` (plus ``signatures`` in a
snapshot, plus ``kinds`` and ``collections`` as above), an inner node exactly
``v, type, count, children``;
``count`` is the number of records below the node (a leaf's equals its list's length).
Anything else is ``InvalidManifest``, so a manifest can carry nothing but links, counts,
signatures, kind names and collection names.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dag_cbor
from multiformats import CID

from node.cid import DAG_CBOR, cid_for
from node.errors import InvalidFact, InvalidInput
from node.facts import DEFAULT_COLLECTION, FACT_KIND_NAME, check_collection

MANIFEST_TYPE = "knowhub/manifest"
LEAF_SIZE = 4096
FANOUT = 1024
SIGNATURE_BYTES = 65

_BASE_KEYS = frozenset({"v", "type", "count"})
LEAF_KEYS = _BASE_KEYS | {"facts"}
SNAPSHOT_LEAF_KEYS = LEAF_KEYS | {"signatures"}
INNER_KEYS = _BASE_KEYS | {"children"}
#: A leaf's optional fields, each present only when needed.
_LEAF_OPTIONS = frozenset({"signatures", "kinds", "collections"})
#: The kind of an entry a leaf lists without ``kinds``.
DEFAULT_KIND = FACT_KIND_NAME
MAX_KIND_CHARS = 64


class InvalidManifest(InvalidInput):
    code = "invalid_manifest"


@dataclass(frozen=True, slots=True)
class Block:
    cid: CID
    data: bytes


@dataclass(frozen=True, slots=True)
class ManifestNode:
    """One manifest block, parsed: an inner node has children, a leaf has facts (and, in a
    snapshot, one signature per fact, in the same order; None in a batch manifest)."""

    count: int
    children: list[CID]
    facts: list[CID]
    signatures: list[bytes] | None
    #: The kind of each entry of ``facts`` (all ``"fact"`` when the leaf has no ``kinds``).
    kinds: list[str] | None = None
    #: The collection of each entry (None for other kinds); None when the leaf names none.
    collections: list[str | None] | None = None

    def kind_of(self, index: int) -> str:
        return DEFAULT_KIND if self.kinds is None else self.kinds[index]


def _block(obj: dict[str, Any]) -> Block:
    data = dag_cbor.encode(obj)
    return Block(cid_for(data, DAG_CBOR), data)


def build_manifest(
    record_cids: Iterable[str],
    kinds: Mapping[str, str] | None = None,
    collections: Mapping[str, str] | None = None,
) -> tuple[Block, list[Block]]:
    """The root batch manifest block and every manifest block of the tree (root last).
    ``kinds`` names the kind of each record that is not a fact (CID -> kind),
    ``collections`` the collection of each fact not in ``default`` (CID -> name)."""
    return _build(sorted(set(record_cids)), None, kinds or {}, collections or {})


def build_snapshot_manifest(
    signed: Iterable[tuple[str, bytes]], kinds: Mapping[str, str] | None = None
) -> tuple[Block, list[Block]]:
    """The root snapshot manifest (leaves carry each record's 65-byte signature) and every
    manifest block of its tree, root last. ``signed`` is (record CID, signature) pairs,
    ``kinds`` as for ``build_manifest``."""
    by_cid = dict(signed)
    for cid, signature in by_cid.items():
        if len(signature) != SIGNATURE_BYTES:
            raise ValueError(f"signature of {cid} is {len(signature)} bytes, not 65")
    cids = sorted(by_cid)
    return _build(cids, [by_cid[c] for c in cids], kinds or {}, {})


def _build(
    cids: list[str],
    signatures: list[bytes] | None,
    kinds: Mapping[str, str],
    collections: Mapping[str, str],
) -> tuple[Block, list[Block]]:
    level: list[Block] = []
    counts: list[int] = []
    for start in range(0, max(len(cids), 1), LEAF_SIZE):  # an empty set is one empty leaf
        chunk = cids[start : start + LEAF_SIZE]
        leaf: dict[str, Any] = {
            "v": 1,
            "type": MANIFEST_TYPE,
            "count": len(chunk),
            "facts": [CID.decode(c) for c in chunk],
        }
        if signatures is not None:
            leaf["signatures"] = signatures[start : start + LEAF_SIZE]
        leaf_kinds = [kinds.get(c, DEFAULT_KIND) for c in chunk]
        if any(k != DEFAULT_KIND for k in leaf_kinds):
            leaf["kinds"] = leaf_kinds
        names = [
            collections.get(c, DEFAULT_COLLECTION) if k == DEFAULT_KIND else None
            for c, k in zip(chunk, leaf_kinds, strict=True)
        ]
        if any(n not in (None, DEFAULT_COLLECTION) for n in names):
            leaf["collections"] = names
        level.append(_block(leaf))
        counts.append(len(chunk))
    blocks = list(level)
    while len(level) > 1:
        parents, parent_counts = [], []
        for start in range(0, len(level), FANOUT):
            children = level[start : start + FANOUT]
            count = sum(counts[start : start + FANOUT])
            parents.append(
                _block(
                    {
                        "v": 1,
                        "type": MANIFEST_TYPE,
                        "count": count,
                        "children": [b.cid for b in children],
                    }
                )
            )
            parent_counts.append(count)
        blocks += parents
        level, counts = parents, parent_counts
    return level[0], blocks


def read_manifest(data: bytes) -> ManifestNode:
    """One manifest block (batch or snapshot) parsed and checked; ``InvalidManifest`` if bad."""
    try:
        obj = dag_cbor.decode(data)
    except Exception as exc:  # dag_cbor raises several types on bad input
        raise InvalidManifest(f"manifest is not DAG-CBOR: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("type") != MANIFEST_TYPE:
        raise InvalidManifest("not a knowhub manifest (type/v)")
    if type(obj.get("v")) is not int or obj["v"] != 1:
        raise InvalidManifest("not a knowhub manifest (type/v)")
    keys = set(obj)
    if keys != INNER_KEYS and not (LEAF_KEYS <= keys <= LEAF_KEYS | _LEAF_OPTIONS):
        raise InvalidManifest(
            f"manifest fields must be {sorted(LEAF_KEYS)} (+ signatures, kinds, collections) "
            f"or {sorted(INNER_KEYS)}, not {sorted(keys)}"
        )
    for key in sorted(keys & _LEAF_OPTIONS):  # present means given: one encoding per leaf
        if obj[key] is None:
            raise InvalidManifest(f"manifest {key} must be a list when present, not null")
    count = obj["count"]
    if type(count) is not int or count < 0:
        raise InvalidManifest("manifest count must be a non-negative integer")
    entries = obj.get("children", obj.get("facts"))
    if not isinstance(entries, list):
        raise InvalidManifest("manifest children/facts must be lists")
    links_ = [e for e in entries if isinstance(e, CID)]
    if len(links_) != len(entries):
        raise InvalidManifest("manifest entries must be CID links")
    if "children" in obj:
        return ManifestNode(count, links_, [], None)
    if count != len(links_):
        raise InvalidManifest(f"leaf manifest count is {count} but it lists {len(links_)} facts")
    kinds = _leaf_kinds(obj.get("kinds"), len(links_))
    names = _leaf_collections(obj.get("collections"), kinds, len(links_))
    signatures = obj.get("signatures")
    if signatures is None:
        return ManifestNode(count, [], links_, None, kinds, names)
    if not isinstance(signatures, list) or len(signatures) != len(links_):
        raise InvalidManifest("manifest signatures must be a list parallel to facts")
    sigs = [s for s in signatures if isinstance(s, bytes) and len(s) == SIGNATURE_BYTES]
    if len(sigs) != len(signatures):
        raise InvalidManifest(f"manifest signatures must be {SIGNATURE_BYTES}-byte strings")
    return ManifestNode(count, [], links_, sigs, kinds, names)


def _leaf_kinds(kinds: Any, entries: int) -> list[str] | None:
    if kinds is None:
        return None
    if not isinstance(kinds, list) or len(kinds) != entries:
        raise InvalidManifest("manifest kinds must be a list parallel to facts")
    if not all(isinstance(k, str) and 0 < len(k) <= MAX_KIND_CHARS for k in kinds):
        raise InvalidManifest(f"manifest kinds must be names of 1-{MAX_KIND_CHARS} characters")
    if all(k == DEFAULT_KIND for k in kinds):
        raise InvalidManifest("a leaf of facts only carries no kinds (canonical form)")
    return list(kinds)


def _leaf_collections(names: Any, kinds: list[str] | None, entries: int) -> list[str | None] | None:
    if names is None:
        return None
    if not isinstance(names, list) or len(names) != entries:
        raise InvalidManifest("manifest collections must be a list parallel to facts")
    out: list[str | None] = []
    for n, name in enumerate(names):
        fact = kinds is None or kinds[n] == DEFAULT_KIND
        if name is None and not fact:
            out.append(None)
            continue
        if not fact or not isinstance(name, str):
            raise InvalidManifest("manifest collections name each fact's, null for other kinds")
        try:
            out.append(check_collection(name, "collections"))
        except InvalidFact as exc:
            raise InvalidManifest(f"manifest collections: {exc.message}") from exc
    if all(name in (None, DEFAULT_COLLECTION) for name in out):
        raise InvalidManifest("a leaf of default facts only carries no collections (canonical)")
    return out


def parse_manifest(data: bytes) -> tuple[list[CID], list[CID]]:
    """(child manifest links, fact links) of one manifest block; ``InvalidManifest`` if bad."""
    node = read_manifest(data)
    return node.children, node.facts


def links(data: bytes, codec: str) -> list[CID]:
    """Every IPLD link inside a block (DAG-CBOR only; raw blocks have none)."""
    if codec != DAG_CBOR:
        return []
    try:
        obj = dag_cbor.decode(data)
    except Exception:  # an undecodable block simply has no links to follow
        return []
    return list(_walk(obj))


def _walk(obj: Any) -> Iterator[CID]:
    if isinstance(obj, CID):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _walk(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _walk(value)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
