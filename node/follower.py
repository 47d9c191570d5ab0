"""Rebuild from the chain: make sure this node holds every fact of every anchored batch.

``ChainFollower`` reads the registry's ``Anchored`` events in block order. Each names a manifest
CID; the follower gets the manifest (from its own content store, else from peers), checks that
the Merkle tree of the CIDs it lists has exactly the anchored root (so a peer cannot add or hide
a fact), fetches the facts it lacks from peers (each verified by its CID and contributor
signature) and stores them. An event that cannot be completed yet (no peer has the data) is
retried; the scan position is kept in the catalog, so a restart resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from multiformats import CID

from node.cid import cid_string
from node.content import BlockService
from node.errors import ChainError, KnowhubError, NotFound
from node.manifest import Block, InvalidManifest, read_manifest
from node.merkle import build_tree
from node.ports import (
    AnchorBook,
    AnchorEvent,
    CatalogSettings,
    FactRecords,
    Ledger,
    PeerFetcher,
    RecordBook,
)
from node.provenance import Batch, BatchStatus
from node.records import SignedRecord
from node.roots import LOG_SPAN

log = logging.getLogger(__name__)

FOLLOW_KEY = "chain_follow_block"


class FollowerCatalog(AnchorBook, FactRecords, RecordBook, CatalogSettings, Protocol):
    """The catalog roles the follower uses: batches to adopt, records it has, its progress."""


class ChainFollower:
    def __init__(
        self,
        catalog: FollowerCatalog,
        ledger: Ledger,
        network: PeerFetcher | None,
        blocks: BlockService,
        store: Callable[[Sequence[SignedRecord]], Awaitable[int]],
        interval: float = 5.0,
        withdrawn: Callable[[Sequence[str]], set[str]] = lambda _cids: set(),
        not_held: Callable[[Sequence[SignedRecord]], set[str]] = lambda _records: set(),
        holds: Callable[[str], bool] = lambda _name: True,
    ) -> None:
        #: Whether this node holds a collection: a manifest that names its facts' collections
        #: (``node.manifest``) lets the follower fetch only the facts it holds.
        self._holds = holds
        self._withdrawn = withdrawn
        #: The CIDs among fetched records that this node does not hold (facts of collections
        #: it does not hold): ingest drops them, and a batch is complete without them.
        self._not_held = not_held
        self._catalog = catalog
        self._ledger = ledger
        self._network = network
        self._blocks = blocks
        self._store = store
        self._interval = interval
        self.verified_batches = 0
        self.facts_fetched = 0
        self.invalid_batches = 0
        self.last_error: str | None = None
        self.wake = asyncio.Event()

    @property
    def follow_block(self) -> int:
        value = self._catalog.get_setting(FOLLOW_KEY)
        return -1 if value is None else int(value)

    async def run(self) -> None:
        while True:
            try:
                await self.step()
                self.last_error = None
            except KnowhubError as exc:
                self.last_error = exc.message
                log.info("chain follower: %s (will retry)", exc.message)
            except Exception as exc:  # the loop must outlive any one failure
                self.last_error = repr(exc)
                log.exception("chain follower failed; will retry")
            self.wake.clear()
            try:
                async with asyncio.timeout(self._interval):
                    await self.wake.wait()
            except TimeoutError:
                pass

    async def step(self) -> None:
        """Process events from the saved position to the chain head, stopping at the first
        batch that cannot be completed yet."""
        head = await asyncio.to_thread(self._ledger.head)
        start = await asyncio.to_thread(lambda: self.follow_block + 1)
        while start <= head:
            end = min(head, start + LOG_SPAN - 1)
            events = await asyncio.to_thread(self._ledger.anchored_events, start, end)
            for event in events:
                if not await self._complete(event):
                    await self._save(event.block_number - 1)
                    return
            await self._save(end)
            start = end + 1

    async def _save(self, block: int) -> None:
        if block > self.follow_block:
            await asyncio.to_thread(self._catalog.set_setting, FOLLOW_KEY, str(block))

    async def _complete(self, event: AnchorEvent) -> bool:
        listed = await self._manifest_facts(event.manifest_cid)
        if listed is None:
            return False
        cids = [cid for cid, _ in listed]
        # facts the manifest places in collections not held here: never fetched (a manifest
        # without collection names, from before them, is fetched whole and sorted by ingest)
        elsewhere = {cid for cid, name in listed if name is not None and not self._holds(name)}
        root = build_tree([bytes(CID.decode(c)) for c in cids]).root if cids else b""
        if root != event.root or len(cids) != event.count:
            self.invalid_batches += 1
            log.warning(
                "anchored root 0x%s (tx %s): manifest %s lists %d facts with another root; "
                "ignoring the batch",
                event.root.hex(),
                event.tx_hash,
                event.manifest_cid,
                len(cids),
            )
            return True
        have = await asyncio.to_thread(self._held, cids)
        missing = [c for c in cids if c not in have and c not in elsewhere]
        if missing and self._network is not None:
            found = await self._network.fetch_records(missing)
            if found:
                await self._store(found)
                self.facts_fetched += len(found)
            elsewhere |= self._not_held(found)
            have = await asyncio.to_thread(self._held, missing)
            missing = [c for c in missing if c not in have and c not in elsewhere]
        if missing:
            log.info("batch 0x%s: %d facts not available yet", event.root.hex(), len(missing))
            return False
        await self._blocks.store_dag([], [CID.decode(event.manifest_cid)])
        await self._adopt(event, cids)
        self.verified_batches += 1
        return True

    def _held(self, cids: Sequence[str]) -> set[str]:
        """The CIDs among ``cids`` this node holds (facts, records of other kinds) or will
        never hold (withdrawn: a revoked fact); a batch is complete when all are."""
        return (
            set(self._catalog.existing(cids))
            | self._catalog.held_records(cids)
            | self._withdrawn(cids)
        )

    async def _adopt(self, event: AnchorEvent, cids: list[str]) -> None:
        """Make the on-chain batch the provenance of its facts that have none here."""
        anchor = await asyncio.to_thread(self._ledger.get_anchor, event.root)
        if anchor is None:  # the event is on chain, so this is a reorg or a lying RPC
            raise ChainError(f"root 0x{event.root.hex()} has an event but no anchor record")
        tree = build_tree([bytes(CID.decode(c)) for c in cids])
        batch = Batch(
            id=0,
            root=event.root,
            manifest_cid=event.manifest_cid,
            count=event.count,
            created_at=0.0,
            status=BatchStatus.ANCHORED,
            tx_hash=event.tx_hash,
            chain_id=self._ledger.chain_id,
            registry=self._ledger.registry,
            block_number=anchor.block_number,
            anchored_at=anchor.timestamp,
            submitter=anchor.submitter,
        )
        proofs = {c: tree.proof(bytes(CID.decode(c))) for c in cids}
        adopted = await asyncio.to_thread(self._catalog.adopt_batch, batch, proofs)
        if adopted:
            log.info("adopted anchor 0x%s for %d facts", event.root.hex(), adopted)

    async def _manifest_facts(self, manifest_cid: str) -> list[tuple[str, str | None]] | None:
        """Every record CID a manifest tree lists, each with the collection the leaf names
        for it (None: not a fact, or a leaf that names none and may hold any), or None while
        some block is unavailable."""
        try:
            todo = [CID.decode(manifest_cid)]
        except (KeyError, ValueError):
            self.invalid_batches += 1
            return []
        facts: list[tuple[str, str | None]] = []
        while todo:
            cid = todo.pop()
            data = await self._block(cid)
            if data is None:
                return None
            try:
                node = read_manifest(data)
            except InvalidManifest as exc:
                log.warning("manifest %s is invalid: %s", cid, exc.message)
                return []
            todo.extend(node.children)
            names = node.collections or [None] * len(node.facts)
            facts.extend((cid_string(f), n) for f, n in zip(node.facts, names, strict=True))
        return facts

    async def _block(self, cid: CID) -> bytes | None:
        try:
            return await self._blocks.get_block(cid)
        except NotFound:
            pass
        if self._network is None:
            return None
        key = cid_string(cid)
        found = await self._network.fetch_blocks([key])
        data = found.get(key)
        if data is not None:
            await self._blocks.store_dag([Block(cid, data)], [])  # pinned once complete
        return data
