"""The embedded content store: a filesystem blockstore in the data directory.

One file per block under ``blocks/<2 chars>/<cid>``, keyed by the canonical CIDv1 base32
string and sharded by its next-to-last two characters (like Kubo's flatfs). Writes are atomic
(temporary file, fsync, rename, fsync of the directory): after ``kill -9`` a block is either
whole or absent. Every read is hashed and checked against the CID. Nothing is garbage
collected, so every stored block is pinned; a block leaves only by ``delete`` (a revoked
fact's), which unlinks its file and fsyncs the directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path

from node.cid import canonical_cid_string, parse_cid, verify_block
from node.errors import InvalidInput, NotFound, StorageError

log = logging.getLogger(__name__)


class CorruptBlock(StorageError):
    code = "corrupt_block"


class FilesystemBlockstore:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._root.mkdir(parents=True, exist_ok=True)

    @property
    def kind(self) -> str:
        return "embedded"

    def _path(self, cid: str) -> Path:
        key = canonical_cid_string(cid)
        return self._root / key[-3:-1] / key

    async def put(self, cid: str, data: bytes) -> None:
        if not verify_block(cid, data):
            raise InvalidInput(f"block does not match its CID {cid}")
        await asyncio.to_thread(self._write, self._path(cid), data)

    def _write(self, path: Path, data: bytes) -> None:
        if path.exists():
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot write block {path.name}: {exc}") from exc

    async def get(self, cid: str) -> bytes:
        path = self._path(cid)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise NotFound(f"block {cid} is not in the store") from exc
        except OSError as exc:
            raise StorageError(f"cannot read block {cid}: {exc}") from exc
        if not verify_block(parse_cid(cid), data):
            log.error("block %s in %s fails its hash check", cid, path)
            raise CorruptBlock(f"stored block {cid} is corrupt (hash mismatch)")
        return data

    async def has(self, cid: str) -> bool:
        return self._path(cid).exists()

    def list_cids(self) -> list[str]:
        """Every block's CID (file names are canonical CIDs; temporary files are skipped)."""
        out: list[str] = []
        try:
            with os.scandir(self._root) as shards:
                for shard in shards:
                    if not shard.is_dir():
                        continue
                    with os.scandir(shard.path) as files:
                        out += [f.name for f in files if not f.name.startswith(".")]
        except OSError as exc:
            raise StorageError(f"cannot list blocks in {self._root}: {exc}") from exc
        return sorted(out)

    async def pin(self, cid: str) -> None:
        if not await self.has(cid):
            raise NotFound(f"cannot pin {cid}: not in the store")

    async def delete(self, cid: str) -> None:
        await asyncio.to_thread(self._unlink, self._path(cid))

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink()
            _fsync_dir(path.parent)
        except FileNotFoundError:
            return  # absent: nothing changed, nothing to make durable
        except OSError as exc:
            raise StorageError(f"cannot delete block {path.name}: {exc}") from exc

    async def close(self) -> None:
        return None


def _fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
