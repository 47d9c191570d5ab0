"""Submissions: what a REST client or a peer hands the node, checked before it is stored."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.cid import cid_from_bytes, cid_to_bytes
from node.errors import InvalidFact, InvalidSignature, KnowhubError
from node.facts import Fact, make_fact
from node.origin import Origin
from node.ports import FactRecords
from node.signing import check_signature, normalize_signature

log = logging.getLogger(__name__)

SUBMISSION_KEYS = frozenset({"text", "metadata", "contributor", "signature"})


@dataclass(frozen=True, slots=True)
class SignedFact:
    """A fact and its contributor's signature over its CID (None: not signed)."""

    fact: Fact
    signature: str | None


def parse_submission(item: Any) -> tuple[Fact, str | None]:
    """A REST/CLI submission ``{"text", "metadata"?, "contributor"?, "signature"?}`` as a
    validated fact and its signature, checked against the record's contributor.

    Raises ``InvalidFact``/``InvalidSignature`` (400) or ``SignatureMismatch`` (401).
    """
    if not isinstance(item, Mapping):
        raise InvalidFact("each fact must be an object with 'text' and optional 'metadata'")
    unknown = set(item) - SUBMISSION_KEYS
    if unknown:
        raise InvalidFact(
            f"unknown field(s) {sorted(unknown)}; allowed: text, metadata, contributor, signature"
        )
    if "text" not in item:
        raise InvalidFact("missing field 'text'", field="text")
    contributor, signature = item.get("contributor"), item.get("signature")
    fact = make_fact(item["text"], item.get("metadata"), contributor)
    if signature is None:
        return fact, None
    if fact.contributor is None:
        raise InvalidSignature("a signature needs the contributor it is by", field="contributor")
    signature = normalize_signature(signature)
    check_signature(fact.cid, fact.contributor, signature)
    return fact, signature


class NodeSink:
    """The node as the network sees it (``node.ports.FactSink``)."""

    def __init__(
        self,
        catalog: FactRecords,
        store: Callable[[Sequence[SignedFact], Origin], Awaitable[int]],
        block: Callable[[str], Awaitable[bytes | None]],
        on_anchor: Callable[[int, str], None],
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._block = block
        self._on_anchor = on_anchor

    async def anchor_announced(self, chain_id: int, registry: str) -> None:
        self._on_anchor(chain_id, registry)

    async def get_block(self, cid: str) -> bytes | None:
        return await self._block(cid)

    async def receive_facts(
        self, facts: Sequence[tuple[Fact, str]], peer: str, origin: Origin
    ) -> int:
        # Peers' facts were verified by the network layer; the node checks the signatures again
        # (cheap) so that nothing unverified can reach the catalog through this door.
        checked: list[SignedFact] = []
        for fact, signature in facts:
            try:
                if fact.contributor is None:
                    raise InvalidSignature("fact has no contributor", field="contributor")
                check_signature(fact.cid, fact.contributor, normalize_signature(signature))
                checked.append(SignedFact(fact, normalize_signature(signature)))
            except KnowhubError as exc:
                log.warning("dropping fact %s from %s: %s", fact.cid, peer, exc.message)
        return await self._store(checked, origin)

    def fact_cids(self) -> list[bytes]:
        return [cid_to_bytes(c) for c in self._catalog.signed_cids()]

    def fact_count(self) -> int:
        return self._catalog.count()

    def signed_records(self, cids: Sequence[bytes]) -> list[tuple[bytes, str]]:
        return self._catalog.signed_records([cid_from_bytes(c) for c in cids])
