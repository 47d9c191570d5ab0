"""IPFS blocks on the node's side: publication to the content store, verified reads, DAG
walks for CAR responses, snapshots (manifests) and verified CAR imports.

Facts are acknowledged once the catalog holds them; their blocks then go to the content store
through a durable queue (a catalog table filled in the same transaction), so a Kubo daemon that
is down delays publication but never a contribution, and the queue drains when it returns.

Snapshots carry provenance: a snapshot is the snapshot manifest (``node.manifest``) of every
*signed* fact, each leaf listing the contributors' signatures beside the fact links. A CAR
brings in nothing else: ``load_car`` accepts only the canonical snapshot manifest of facts that
each carry a valid EIP-191 signature by the record's contributor, checked exactly like a signed
submission, and rejects the whole CAR, naming the first bad fact, otherwise. Uploads are spooled
only under ``DATA_DIR/tmp`` (``spool_file``: anonymous files, gone when closed), which
``clear_spool_dir`` empties at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol

from multiformats import CID

from node.car import InvalidCar, read_car, supported_hash
from node.cid import DAG_CBOR, cid_string, dag_cbor_cid, verify_block
from node.errors import (
    InvalidFact,
    InvalidSignature,
    KnowhubError,
    NotFound,
    StorageError,
    Unavailable,
)
from node.facts import FACT_KIND_NAME
from node.kinds import decode_record, kind_of, with_signature
from node.manifest import (
    Block,
    InvalidManifest,
    build_snapshot_manifest,
    links,
    read_manifest,
)
from node.ports import ContentStore, FactRecords, PublicationQueue, RecordBook
from node.records import SignedRecord
from node.signing import normalize_signature

log = logging.getLogger(__name__)

PUBLISH_BATCH = 256
MAX_BACKOFF = 30.0
#: Facts read from the catalog at a time while building a snapshot.
SNAPSHOT_CHUNK = 4096
#: Private directory (under the data dir) of upload spool files; emptied at every start.
SPOOL_DIR = "tmp"


class BlockCatalog(FactRecords, RecordBook, PublicationQueue, Protocol):
    """The catalog roles the block service uses: record blocks and their publication queue."""


class DagScope(StrEnum):
    ALL = "all"
    ENTITY = "entity"
    BLOCK = "block"


class BlockService:
    def __init__(self, store: ContentStore, catalog: BlockCatalog) -> None:
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
            await self._store.put_many(batch)
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
        if not supported_hash(cid):  # the node only ever holds sha2-256 blocks
            raise NotFound(f"no block {key}: this node stores only sha2-256 blocks")
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
        """Store (and pin) the snapshot manifest of every signed fact, each with its signature;
        return its root and the count. Unsigned facts (none since catalog schema 2 but those
        an older version imported from CARs) are left out: they cannot be imported anywhere."""
        signed, kinds = await asyncio.to_thread(self._signed_records)
        root, blocks = build_snapshot_manifest(signed, kinds)
        await self.store_dag(blocks, [root.cid])
        return root, len(signed)

    def _signed_records(self) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
        """(CID, signature) of every signed record of any kind, and the kind of each record
        that is not a fact."""
        cids = self._catalog.signed_cids()
        out: list[tuple[str, bytes]] = []
        kinds: dict[str, str] = {}
        for start in range(0, len(cids), SNAPSHOT_CHUNK):
            chunk = cids[start : start + SNAPSHOT_CHUNK]
            others = self._catalog.held_records(chunk)  # not facts: only these say their kind
            for block, signature in self._catalog.signed_records(chunk):
                cid = dag_cbor_cid(block)
                out.append((cid, bytes.fromhex(signature.removeprefix("0x"))))
                if cid in others:
                    kinds[cid] = kind_of(block).name
        unsigned = self._catalog.count() + len(kinds) - len(out)
        if unsigned > 0:
            log.warning("snapshot leaves out %d facts that carry no signature", unsigned)
        return out, kinds

    async def store_dag(self, blocks: list[Block], roots: list[CID]) -> None:
        """Put manifest blocks into the content store, then pin the roots (recursively)."""
        for block in blocks:
            await self._store.put(cid_string(block.cid), block.data)
        for root in roots:
            await self._store.pin(cid_string(root))


#: What ``load_car`` reads: a CAR file, or an open binary file positioned at its start.
CarSource = Path | BinaryIO


@dataclass(frozen=True, slots=True)
class LoadedCar:
    """A snapshot CAR that passed every check: its roots, its signed records of every kind
    (signatures checked), and its manifest blocks."""

    roots: list[CID]
    facts: list[SignedRecord]
    manifests: list[Block]


def load_car(source: CarSource) -> LoadedCar:
    """Read and check a snapshot CAR completely; raise ``InvalidCar`` before anything is stored.

    Every block hashes to its (sha2-256) CID; every root is a snapshot manifest, the canonical
    one (``build_snapshot_manifest``) of the facts and signatures it lists, all present; every
    fact is a valid record naming a contributor, and its signature is that contributor's
    (``node.signing.check_signature``, as for a signed submission). The first fact that fails
    rejects the whole CAR, and the message names it.
    """
    if isinstance(source, Path):
        with source.open("rb") as fh:
            roots, by_cid = _index_blocks(fh)
    else:
        roots, by_cid = _index_blocks(source)
    if not roots:
        raise InvalidCar("CAR has no root: a snapshot's root is its manifest")
    facts: dict[str, SignedRecord] = {}
    manifests: dict[bytes, Block] = {}
    for root in roots:
        listed = _walk_snapshot(root, by_cid)
        for signed in listed:
            facts.setdefault(signed.cid, signed)
        canonical, blocks = build_snapshot_manifest(
            ((s.cid, s.signature_bytes) for s in listed),
            {s.cid: s.kind for s in listed if s.kind != FACT_KIND_NAME},
        )
        if canonical.cid != root:
            raise InvalidCar(
                f"root {cid_string(root)} is not the canonical snapshot manifest of the facts "
                f"it lists (that is {cid_string(canonical.cid)}: facts sorted by CID, "
                "4,096 per leaf, 1,024 children per inner node, exact counts)"
            )
        for block in blocks:
            manifests[bytes(block.cid)] = block
    return LoadedCar(roots, list(facts.values()), list(manifests.values()))


def _index_blocks(stream: BinaryIO) -> tuple[list[CID], dict[bytes, tuple[CID, bytes]]]:
    """The roots, and every verified block by binary CID."""
    roots, blocks = read_car(stream)
    by_cid: dict[bytes, tuple[CID, bytes]] = {}
    for cid, data in blocks:
        by_cid[bytes(cid)] = (cid, data)
    return roots, by_cid


def _walk_snapshot(root: CID, by_cid: dict[bytes, tuple[CID, bytes]]) -> list[SignedRecord]:
    """The signed records a snapshot manifest tree lists, in manifest order, each checked."""
    out: list[SignedRecord] = []
    stack = [root]
    seen: set[bytes] = set()
    while stack:
        cid = stack.pop()
        if bytes(cid) in seen:
            raise InvalidCar(f"manifest {cid_string(cid)} is linked twice: not a snapshot tree")
        seen.add(bytes(cid))
        if bytes(cid) not in by_cid:
            raise InvalidCar(f"CAR is incomplete: manifest block {cid_string(cid)} is missing")
        _, data = by_cid[bytes(cid)]
        try:
            node = read_manifest(data)
        except InvalidManifest as exc:
            raise InvalidCar(
                f"block {cid_string(cid)} is not a knowhub manifest: {exc.message}"
            ) from exc
        stack.extend(reversed(node.children))
        if node.children:
            continue
        if node.signatures is None:
            raise InvalidCar(
                f"manifest {cid_string(cid)} lists facts without their signatures: a snapshot "
                "leaf must carry each contributor's signature (export it with this version)"
            )
        for i, (link, signature) in enumerate(zip(node.facts, node.signatures, strict=True)):
            out.append(_signed_record(link, signature, node.kind_of(i), by_cid))
    return out


def _signed_record(
    link: CID, signature: bytes, kind: str, by_cid: dict[bytes, tuple[CID, bytes]]
) -> SignedRecord:
    name = cid_string(link)
    if link.codec.name != DAG_CBOR or bytes(link) not in by_cid:
        raise InvalidCar(f"CAR is incomplete: {kind} {name} is missing")
    try:
        body = decode_record(by_cid[bytes(link)][1])
    except InvalidFact as exc:
        raise InvalidCar(f"{kind} {name} is not a valid {kind} record: {exc.message}") from exc
    if body.kind != kind:
        raise InvalidCar(f"record {name} is a {body.kind}, but its manifest says {kind}")
    hex_signature = "0x" + signature.hex()
    try:
        if normalize_signature(hex_signature) != hex_signature:
            raise InvalidSignature("a manifest holds signatures in canonical form (v 27 or 28)")
        return with_signature(body, hex_signature)
    except KnowhubError as exc:
        raise InvalidCar(
            f"{kind} {name} (contributor {body.contributor}) has no valid signature: {exc.message}"
        ) from exc


# -- upload spool ------------------------------------------------------------------------------


def spool_dir(data_dir: Path) -> Path:
    return data_dir / SPOOL_DIR


def clear_spool_dir(data_dir: Path) -> None:
    """Remove ``DATA_DIR/tmp`` (what an upload left when the node died) and leftovers of older
    versions (``DATA_DIR/import-*.car``); call once at start, before serving."""
    path = spool_dir(data_dir)
    shutil.rmtree(path, ignore_errors=True)
    for stale in data_dir.glob("import-*.car"):
        stale.unlink(missing_ok=True)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def spool_file(data_dir: Path) -> BinaryIO:
    """A private read/write temporary file under ``DATA_DIR/tmp`` (mode 0600; unnamed where
    the OS allows, else unlinked at once), so nothing outlives the handle, even a crash."""
    path = spool_dir(data_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle: BinaryIO = tempfile.TemporaryFile(dir=path)  # noqa: SIM115 (the caller closes it)
    os.fchmod(handle.fileno(), 0o600)
    return handle
