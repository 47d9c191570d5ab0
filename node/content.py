"""IPFS blocks on the node's side: publication to the content store, verified reads, DAG
walks for CAR responses, snapshots (manifests) and verified CAR imports.

Facts are acknowledged once the catalog holds them; their blocks then go to the content store
through a durable queue (a catalog table filled in the same transaction), so a Kubo daemon that
is down delays publication but never a contribution, and the queue drains when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path

from multiformats import CID

from node.car import InvalidCar, read_car
from node.cid import DAG_CBOR, cid_string, verify_block
from node.errors import InvalidFact, NotFound, StorageError, Unavailable
from node.facts import Fact, decode_fact
from node.manifest import Block, InvalidManifest, build_manifest, links, parse_manifest
from node.ports import Catalog, ContentStore

log = logging.getLogger(__name__)

PUBLISH_BATCH = 256
MAX_BACKOFF = 30.0


class DagScope(StrEnum):
    ALL = "all"
    ENTITY = "entity"
    BLOCK = "block"


class BlockService:
    def __init__(self, store: ContentStore, catalog: Catalog) -> None:
        self._store = store
        self._catalog = catalog
        self.wake = asyncio.Event()
        self.last_error: str | None = None

    @property
    def store_kind(self) -> str:
        return self._store.kind

    # -- publication -------------------------------------------------------------------------

    async def publish_pending(self) -> int:
        """Write queued fact blocks to the content store and pin them; return how many."""
        done = 0
        while True:
            batch = await asyncio.to_thread(self._catalog.pending_publication, PUBLISH_BATCH)
            if not batch:
                return done
            for cid, block in batch:
                await self._store.put(cid, block)
                await self._store.pin(cid)
            await asyncio.to_thread(self._catalog.mark_published, [c for c, _ in batch])
            done += len(batch)

    async def run_publisher(self) -> None:
        backoff = 0.5
        while True:
            try:
                published = await self.publish_pending()
                if published:
                    log.debug("published %d blocks to the %s store", published, self.store_kind)
                self.last_error = None
                backoff = 0.5
                self.wake.clear()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the awaited event fires (CPython gh-86296)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5.0):
                        await self.wake.wait()
            except (Unavailable, StorageError) as exc:
                self.last_error = exc.message
                log.warning("content store: %s; retrying in %.1f s", exc.message, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    # -- reads -------------------------------------------------------------------------------

    async def get_block(self, cid: CID) -> bytes:
        """A verified block: from the content store, else (facts) from the catalog."""
        key = cid_string(cid)
        try:
            return await self._store.get(key)
        except NotFound:
            pass
        except Unavailable as exc:
            log.info("content store unavailable (%s); reading %s from the catalog", exc, key)
        data = await asyncio.to_thread(self._catalog.block, key)
        if data is None:
            raise NotFound(f"no block {key} on this node")
        if not verify_block(cid, data):
            raise StorageError(f"catalog block {key} fails its hash check")
        return data

    async def walk(self, root: CID, scope: DagScope) -> AsyncIterator[tuple[CID, bytes]]:
        """Depth-first, each block once. The root is fetched before anything is yielded."""
        seen: set[bytes] = set()
        stack = [root]
        while stack:
            cid = stack.pop()
            if bytes(cid) in seen:
                continue
            seen.add(bytes(cid))
            data = await self.get_block(cid)
            yield cid, data
            if scope is DagScope.ALL:
                stack.extend(reversed(links(data, cid.codec.name)))

    # -- snapshots ---------------------------------------------------------------------------

    async def snapshot(self) -> tuple[Block, int]:
        """Store (and pin) the manifest tree of every fact; return its root and the count."""
        cids = await asyncio.to_thread(self._catalog.cids)
        root, blocks = build_manifest(cids)
        await self.store_dag(blocks, [root.cid])
        return root, len(cids)

    async def store_dag(self, blocks: list[Block], roots: list[CID]) -> None:
        """Put manifest blocks into the content store, then pin the roots (recursively)."""
        for block in blocks:
            await self._store.put(cid_string(block.cid), block.data)
        for root in roots:
            await self._store.pin(cid_string(root))


def load_car(path: Path) -> tuple[list[CID], list[Fact], list[Block]]:
    """Read and check a snapshot CAR completely: every block hashes to its CID, the roots are
    manifests, every manifest and fact they reach is present and valid. Raises ``InvalidCar``
    before anything is stored."""
    with path.open("rb") as fh:
        roots, blocks = read_car(fh)
        by_cid: dict[bytes, tuple[CID, bytes]] = {}
        for cid, data in blocks:
            by_cid[bytes(cid)] = (cid, data)
    if not roots:
        raise InvalidCar("CAR has no root: a snapshot's root is its manifest")
    facts: dict[str, Fact] = {}
    manifests: list[Block] = []
    stack = list(roots)
    seen: set[bytes] = set()
    while stack:
        cid = stack.pop()
        if bytes(cid) in seen:
            continue
        seen.add(bytes(cid))
        if bytes(cid) not in by_cid:
            raise InvalidCar(f"CAR is incomplete: manifest block {cid_string(cid)} is missing")
        _, data = by_cid[bytes(cid)]
        try:
            children, fact_links = parse_manifest(data)
        except InvalidManifest as exc:
            raise InvalidCar(
                f"block {cid_string(cid)} is not a knowhub manifest: {exc.message}"
            ) from exc
        manifests.append(Block(cid, data))
        stack.extend(children)
        for link in fact_links:
            if link.codec.name != DAG_CBOR or bytes(link) not in by_cid:
                raise InvalidCar(f"CAR is incomplete: fact {cid_string(link)} is missing")
            try:
                fact = decode_fact(by_cid[bytes(link)][1])
            except InvalidFact as exc:
                raise InvalidCar(
                    f"fact {cid_string(link)} is not a valid fact record: {exc.message}"
                ) from exc
            facts[fact.cid] = fact
    return roots, list(facts.values()), manifests
