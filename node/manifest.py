"""Manifests: DAG-CBOR objects that list fact CIDs, so a set of facts is one CID.

A leaf manifest is ``{"v": 1, "type": "knowhub/manifest", "count": n, "facts": [link, ...]}``
with at most ``LEAF_SIZE`` facts; a larger set is a tree whose inner nodes carry
``"children": [link, ...]`` instead of ``"facts"``. Links are real IPLD links (CBOR tag 42),
so ``ipfs dag export <manifest>`` of Kubo returns the manifest and every fact it names. Facts are
sorted by CID string before chunking: the same set of facts always gives the same root CID.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dag_cbor
from multiformats import CID

from node.cid import DAG_CBOR, cid_for
from node.errors import InvalidInput

MANIFEST_TYPE = "knowhub/manifest"
LEAF_SIZE = 4096
FANOUT = 1024


class InvalidManifest(InvalidInput):
    code = "invalid_manifest"


@dataclass(frozen=True, slots=True)
class Block:
    cid: CID
    data: bytes


def _block(obj: dict[str, Any]) -> Block:
    data = dag_cbor.encode(obj)
    return Block(cid_for(data, DAG_CBOR), data)


def build_manifest(fact_cids: Iterable[str]) -> tuple[Block, list[Block]]:
    """The root manifest block and every manifest block of the tree (root last)."""
    cids = sorted(set(fact_cids))
    level = [
        _block(
            {
                "v": 1,
                "type": MANIFEST_TYPE,
                "count": len(chunk),
                "facts": [CID.decode(c) for c in chunk],
            }
        )
        for chunk in _chunks(cids, LEAF_SIZE)
    ] or [_block({"v": 1, "type": MANIFEST_TYPE, "count": 0, "facts": []})]
    counts = [min(LEAF_SIZE, len(cids) - i * LEAF_SIZE) for i in range(len(level))] or [0]
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


def parse_manifest(data: bytes) -> tuple[list[CID], list[CID]]:
    """(child manifest links, fact links) of one manifest block; ``InvalidManifest`` if bad."""
    try:
        obj = dag_cbor.decode(data)
    except Exception as exc:  # dag_cbor raises several types on bad input
        raise InvalidManifest(f"manifest is not DAG-CBOR: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("type") != MANIFEST_TYPE or obj.get("v") != 1:
        raise InvalidManifest("not a knowhub manifest (type/v)")
    children = obj.get("children", [])
    facts = obj.get("facts", [])
    if not isinstance(children, list) or not isinstance(facts, list):
        raise InvalidManifest("manifest children/facts must be lists")
    if not all(isinstance(c, CID) for c in [*children, *facts]):
        raise InvalidManifest("manifest entries must be CID links")
    if not isinstance(obj.get("count"), int):
        raise InvalidManifest("manifest count must be an integer")
    return [c for c in children if isinstance(c, CID)], [f for f in facts if isinstance(f, CID)]


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
