"""The embedded content store: IPFS blocks in one SQLite file in the data directory.

Replaces one file per block (``index.blockstore``, Kubo-flatfs-like): a fact block is ~150
bytes, and a file costs a 4 KiB filesystem block plus an inode, so a million facts took 4 GB
and a million directory entries. Here a block is a row of a ``WITHOUT ROWID`` table keyed by
its canonical CIDv1 base32 string (~250 bytes per fact block on disk).

Invariants:

- ``put`` verifies the block against its CID before storing it; every ``get`` hashes what it
  read and raises ``CorruptBlock`` on a mismatch (never serves a wrong block).
- A ``put`` is durable when it returns (WAL, ``synchronous=FULL``): after ``kill -9`` a block
  is whole or absent; ``put_many`` writes its batch in one transaction (one fsync), all or
  none. Re-putting a stored block changes nothing.
- Nothing is garbage collected, so every stored block is pinned; a block leaves only by
  ``delete`` (a revoked fact's), with ``secure_delete`` on and the WAL checkpointed, so its
  bytes do not linger in free pages or the log.
- One connection, used from worker threads under a lock; the event loop never blocks on it.

``migrate_filesystem_blocks`` moves a data directory's old ``blocks/`` tree into the file
once, crash-safely (the SQLite file appears only complete, by rename; the tree is removed last).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from node.cid import canonical_cid_string, verify_block
from node.errors import InvalidInput, NotFound, StorageError

log = logging.getLogger(__name__)


class CorruptBlock(StorageError):
    code = "corrupt_block"


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS blocks (cid TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID"
)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute(_SCHEMA)
    return conn


class SqliteBlockstore:
    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = _connect(path)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the blockstore {path}: {exc}") from exc
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return "embedded"

    def _run(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"blockstore {self._path}: {exc}") from exc

    async def put(self, cid: str, data: bytes) -> None:
        await self.put_many([(cid, data)])

    async def put_many(self, blocks: Sequence[tuple[str, bytes]]) -> None:
        rows = []
        for cid, data in blocks:
            if not verify_block(cid, data):
                raise InvalidInput(f"block does not match its CID {cid}")
            rows.append((canonical_cid_string(cid), data))
        await asyncio.to_thread(self._put_rows, rows)

    def _put_rows(self, rows: list[tuple[str, bytes]]) -> None:
        """All rows in one transaction: one fsync for the batch, and all or none on a crash."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(
                        "INSERT OR IGNORE INTO blocks (cid, data) VALUES (?, ?)", rows
                    )
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"blockstore {self._path}: {exc}") from exc

    async def get(self, cid: str) -> bytes:
        key = canonical_cid_string(cid)
        rows = await asyncio.to_thread(self._run, "SELECT data FROM blocks WHERE cid = ?", (key,))
        if not rows:
            raise NotFound(f"block {cid} not found")
        data: bytes = rows[0][0]
        if not verify_block(key, data):
            raise CorruptBlock(f"stored block {key} does not match its CID")
        return data

    async def has(self, cid: str) -> bool:
        key = canonical_cid_string(cid)
        rows = await asyncio.to_thread(self._run, "SELECT 1 FROM blocks WHERE cid = ?", (key,))
        return bool(rows)

    def list_cids(self) -> list[str]:
        return [str(r[0]) for r in self._run("SELECT cid FROM blocks ORDER BY cid", ())]

    async def pin(self, cid: str) -> None:
        if not await self.has(cid):
            raise NotFound(f"block {cid} not found")

    async def delete(self, cid: str) -> None:
        key = canonical_cid_string(cid)
        await asyncio.to_thread(self._delete, key)

    def _delete(self, key: str) -> None:
        with self._lock:
            try:
                if self._conn.execute("DELETE FROM blocks WHERE cid = ?", (key,)).rowcount:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise StorageError(f"blockstore {self._path}: {exc}") from exc

    async def close(self) -> None:
        with self._lock:
            self._conn.close()


def migrate_filesystem_blocks(tree: Path, target: Path) -> int:
    """Move the blocks of a one-file-per-block ``tree`` into the SQLite blockstore ``target``
    (which must not exist yet); return how many moved. Each block is verified on the way; a
    corrupt one is left out and logged. Crash-safe: the store is built beside ``target`` and
    renamed into place, and ``tree`` is removed only after."""
    tmp = target.with_name(target.name + ".migrating")
    tmp.unlink(missing_ok=True)
    conn = _connect(tmp)
    moved = 0
    try:
        conn.execute("BEGIN")
        for path in sorted(tree.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                key = canonical_cid_string(path.name)
            except InvalidInput:  # a temporary file of an interrupted write
                continue
            data = path.read_bytes()
            if not verify_block(key, data):
                log.error("block file %s does not match its CID: not migrated", path)
                continue
            conn.execute("INSERT OR IGNORE INTO blocks (cid, data) VALUES (?, ?)", (key, data))
            moved += 1
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, target)
    shutil.rmtree(tree)
    log.info("moved %d blocks from %s into %s", moved, tree, target)
    return moved
