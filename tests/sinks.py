"""``RecordSink`` fakes for network tests: the node as the network sees it, without a node.

``RecordingSink`` keeps records by binary CID with the origin each came by, answers per
replication set (``node.collections.set_of``) for the collections it holds, and ``judge``
refuses the CIDs in ``invalid``. ``MODEL_CID`` is a model CID for sinks that need one."""

from __future__ import annotations

from collections.abc import Sequence

from multiformats import CID

from node.collections import RECORDS_SET, Collections, set_of
from node.errors import CollectionNotHeld
from node.facts import DEFAULT_COLLECTION
from node.model_identity import bare_description, model_cid
from node.origin import Origin
from node.ports import PeerAnswer, PeerRequest
from node.records import SignedRecord

MODEL_CID = model_cid(bare_description("test-model", 8))


class QuietSink:
    """The parts of a ``RecordSink`` a network test rarely cares about: it judges nothing
    invalid, serves no blocks, ignores anchor notices, answers no queries and holds the
    default collection's set (override what a test needs)."""

    def judge(self, records: Sequence[SignedRecord]) -> str | None:
        return None

    def sets(self) -> list[str]:
        return [RECORDS_SET, DEFAULT_COLLECTION]

    def held(self) -> Collections:
        return Collections()

    def model_cid(self) -> str:
        return MODEL_CID

    async def get_block(self, cid: str) -> bytes | None:
        return None

    async def anchor_announced(self, chain_id: int, registry: str) -> None:
        return None

    async def answer_query(self, query: PeerRequest, peer: str) -> PeerAnswer:
        raise CollectionNotHeld("this sink answers no queries")


class RecordingSink(QuietSink):
    def __init__(
        self, records: Sequence[SignedRecord] = (), collections: Collections | None = None
    ) -> None:
        self.records: dict[bytes, SignedRecord] = {}
        self.origins: dict[str, str] = {}
        self.invalid: set[str] = set()
        self.collections = collections or Collections()
        #: Every record ever handed to ``receive_records`` (dropped ones included), in order.
        self.offered: list[SignedRecord] = []
        for record in records:
            self.add(record)

    def add(self, record: SignedRecord) -> None:
        self.records[bytes(CID.decode(record.cid))] = record

    def has(self, cid: str) -> bool:
        return any(r.cid == cid for r in self.records.values())

    async def receive_records(
        self, records: Sequence[SignedRecord], peer: str, origin: Origin
    ) -> int:
        new = 0
        for record in records:
            self.offered.append(record)
            if not self.collections.holds_set(set_of(record)):
                continue  # as node.ingest drops a collection it does not hold
            new += not self.has(record.cid)
            self.origins.setdefault(record.cid, origin.value)
            self.add(record)
        return new

    def judge(self, records: Sequence[SignedRecord]) -> str | None:
        bad = [r.cid for r in records if r.cid in self.invalid]
        return f"{bad[0]}: judged invalid" if bad else None

    def record_cids(self, set_name: str | None = None) -> list[bytes]:
        return [c for c, r in self.records.items() if set_name in (None, set_of(r))]

    def sets(self) -> list[str]:
        names = {set_of(r) for r in self.records.values()} - {RECORDS_SET}
        return [RECORDS_SET, *sorted(n for n in names if self.collections.holds(n))]

    def held(self) -> Collections:
        return self.collections

    def set_version(self) -> int:
        return len(self.records)

    def signed_records(self, cids: Sequence[bytes]) -> list[tuple[bytes, str]]:
        return [
            (self.records[c].block, self.records[c].signature) for c in cids if c in self.records
        ]
