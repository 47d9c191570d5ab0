"""Submissions: what a REST client or a peer hands the node, checked before it is stored.

``parse_submission`` checks a REST/CLI fact (and its signature, once); ``NodeSink`` is the
node as the network sees it: it takes records the network already verified
(``node.kinds.verify_record``; the ``SignedRecord`` type says so) and asks the node's rules
whether they are acceptable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from node.cid import cid_from_bytes, cid_to_bytes
from node.collections import RECORDS_SET, Collections
from node.errors import (
    InvalidFact,
    InvalidSignature,
    KnowhubError,
    SignatureRequired,
)
from node.facts import DEFAULT_COLLECTION, Fact, make_fact
from node.origin import Origin
from node.ports import FactRecords, PeerAnswer, PeerRequest, RecordBook
from node.records import RecordBody, SignedRecord
from node.signing import SigningKey, check_signature, normalize_signature

log = logging.getLogger(__name__)

SUBMISSION_KEYS = frozenset(
    {"text", "metadata", "contributor", "signature", "supersedes", "collection"}
)


class SinkCatalog(FactRecords, RecordBook, Protocol):
    """The catalog roles the network's view of the node reads."""

    def collection_counts(self) -> dict[str, int]: ...


def parse_submission(item: Any) -> tuple[Fact, str | None]:
    """A REST/CLI submission ``{"text", "metadata"?, "contributor"?, "signature"?,
    "supersedes"?, "collection"?}`` as a
    validated fact and its signature, checked against the record's contributor.

    Raises ``InvalidFact``/``InvalidSignature`` (400) or ``SignatureMismatch`` (401).
    """
    if not isinstance(item, Mapping):
        raise InvalidFact("each fact must be an object with 'text' and optional 'metadata'")
    unknown = set(item) - SUBMISSION_KEYS
    if unknown:
        raise InvalidFact(
            f"unknown field(s) {sorted(unknown)}; allowed: {', '.join(sorted(SUBMISSION_KEYS))}"
        )
    if "text" not in item:
        raise InvalidFact("missing field 'text'", field="text")
    contributor, signature = item.get("contributor"), item.get("signature")
    fact = make_fact(
        item["text"],
        item.get("metadata"),
        contributor,
        item.get("supersedes"),
        item.get("collection", DEFAULT_COLLECTION),
    )
    if signature is None:
        return fact, None
    if fact.contributor is None:
        raise InvalidSignature("a signature needs the contributor it is by", field="contributor")
    signature = normalize_signature(signature)
    check_signature(fact.cid, fact.contributor, signature)
    return fact, signature


class NodeSink:
    """The node as the network sees it (``node.ports.RecordSink``)."""

    def __init__(
        self,
        catalog: SinkCatalog,
        store: Callable[[Sequence[SignedRecord], Origin], Awaitable[int]],
        block: Callable[[str], Awaitable[bytes | None]],
        on_anchor: Callable[[int, str], None],
        judge: Callable[[Sequence[RecordBody]], dict[str, KnowhubError]],
        collections: Collections,
        model: str,
        answer: Callable[[PeerRequest, str], Awaitable[PeerAnswer]],
    ) -> None:
        self._catalog = catalog
        self._collections = collections
        self._model = model
        self._answer = answer
        self._store = store
        self._block = block
        self._on_anchor = on_anchor
        self._judge = judge

    async def anchor_announced(self, chain_id: int, registry: str) -> None:
        self._on_anchor(chain_id, registry)

    async def answer_query(self, query: PeerRequest, peer: str) -> PeerAnswer:
        return await self._answer(query, peer)

    async def get_block(self, cid: str) -> bytes | None:
        return await self._block(cid)

    async def receive_records(
        self, records: Sequence[SignedRecord], peer: str, origin: Origin
    ) -> int:
        # verified by the network layer (the type says so): not checked again here
        return await self._store(records, origin)

    def judge(self, records: Sequence[SignedRecord]) -> str | None:
        for cid, why in self._judge([r.body for r in records]).items():
            return f"{cid}: {why.message}"
        return None

    def record_cids(self, set_name: str | None = None) -> list[bytes]:
        return [cid_to_bytes(c) for c in self._catalog.signed_cids(set_name)]

    def sets(self) -> list[str]:
        stored = self._catalog.collection_counts()
        return [RECORDS_SET, *sorted(n for n in stored if self._collections.holds(n))]

    def held(self) -> Collections:
        return self._collections

    def model_cid(self) -> str:
        return self._model

    def set_version(self) -> int:
        # Facts are only added or erased (one per tombstone), records only added: the pair of
        # counts changes whenever the signed set does.
        return self._catalog.count() + (sum(self._catalog.record_counts().values()) << 32)

    def signed_records(self, cids: Sequence[bytes]) -> list[tuple[bytes, str]]:
        return self._catalog.signed_records([cid_from_bytes(c) for c in cids])


def accept(item: Any, operator: SigningKey, *, require_signatures: bool) -> SignedRecord:
    """A REST/CLI/MCP submission as a signed fact: the contributor's signature checked, or,
    when it has neither contributor nor signature, made the operator's (``SignatureRequired``
    when the node requires signatures)."""
    if isinstance(item, Mapping) and item.get("signature") is None:
        if item.get("contributor") is not None:
            raise SignatureRequired(
                "a fact naming a contributor must carry that contributor's signature "
                "(EIP-191 personal_sign of the fact CID)",
                field="signature",
            )
        if require_signatures:
            raise SignatureRequired(
                "this node requires signed contributions: add contributor and signature",
                field="signature",
            )
        fact, _ = parse_submission({**item, "contributor": operator.address})
        return SignedRecord(fact, operator.sign_cid(fact.cid))
    fact, signature = parse_submission(item)
    assert signature is not None  # parse_submission checked it; None was handled above
    return SignedRecord(fact, signature)


def accept_each(
    items: Sequence[Any], operator: SigningKey, require_signatures: bool
) -> list[SignedRecord | KnowhubError]:
    """``accept`` for each item; an item's error in its place (blocking: a worker thread)."""
    accepted: list[SignedRecord | KnowhubError] = []
    for item in items:
        try:
            accepted.append(accept(item, operator, require_signatures=require_signatures))
        except KnowhubError as exc:
            accepted.append(exc)
    return accepted
