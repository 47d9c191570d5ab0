"""The root cache: the Merkle roots anchored in one registry on one chain, read from the chain.

A verifier that trusts nothing but the chain keeps this cache and checks proof-carrying hits
against it (``node.proofs``) with no network round trip per query. It is filled only from the
registry's ``Anchored`` events (``eth_getLogs``), never from a node's answer, and follows the
chain incrementally: ``refresh`` reads the blocks after the last one it read, up to the head
less ``confirmations`` (blocks a reorg could still drop are left for later).

Invariants:

- A cache belongs to one (chain id, registry): a file written for another is refused on load,
  and so is an event source on another chain or registry (``RootCacheMismatch``).
- The file is replaced atomically (written beside it, fsynced, renamed) after every span read,
  so a crash leaves the previous state or the next one, never a torn file; a reader that
  resumes re-reads at most one span.
- ``next_block`` only grows; a root, once cached, keeps the first event that anchored it (the
  registry refuses a second anchor of the same root).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from node.errors import InvalidInput
from node.ports import AnchorEvent
from node.provenance import RegistryReader

log = logging.getLogger(__name__)

#: Blocks per ``eth_getLogs`` request (public RPC providers cap the range; 5,000 is accepted
#: by the common ones and by anvil).
LOG_SPAN = 5000
FORMAT = "knowhub-root-cache/1"


class RootCacheMismatch(InvalidInput):
    """The cache file or the event source is for another chain or registry."""

    code = "root_cache_mismatch"


class AnchorLog(Protocol):
    """Read-only access to a registry's ``Anchored`` events (``contracts.registry`` on a real
    chain; ``node.memory.MemoryLedger`` in tests). Blocking: one RPC round trip per call."""

    @property
    def chain_id(self) -> int: ...

    @property
    def registry(self) -> str: ...

    def head(self) -> int: ...

    def anchored_events(self, from_block: int, to_block: int) -> list[AnchorEvent]: ...


class ChainReader(RegistryReader, AnchorLog, Protocol):
    """Both read-only roles of a registry on a chain (``contracts.registry.RegistryClient``)."""


@dataclass(frozen=True, slots=True)
class KnownRoot:
    """What the chain says about an anchored root."""

    block_number: int
    submitter: str
    manifest_cid: str
    count: int
    tx_hash: str


class RootCache:
    """Anchored roots of one registry, persisted to ``path`` (None: in memory only)."""

    def __init__(
        self,
        chain_id: int,
        registry: str,
        path: Path | None = None,
        *,
        start_block: int = 0,
        confirmations: int = 0,
    ) -> None:
        if confirmations < 0 or start_block < 0:
            raise ValueError("start_block and confirmations must be >= 0")
        self.chain_id = chain_id
        self.registry = registry.lower()
        self.confirmations = confirmations
        self._path = path
        self._roots: dict[bytes, KnownRoot] = {}
        self.next_block = start_block
        if path is not None and path.exists():
            self._load(path)

    def __len__(self) -> int:
        return len(self._roots)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._roots)

    def get(self, root: bytes) -> KnownRoot | None:
        return self._roots.get(root)

    def refresh(self, source: AnchorLog) -> int:
        """Read the events after ``next_block`` up to the head less ``confirmations``; return
        how many new roots were cached. Chain errors propagate (the cache keeps what it read)."""
        self.check_source(source)
        last = source.head() - self.confirmations
        added = 0
        while self.next_block <= last:
            end = min(self.next_block + LOG_SPAN - 1, last)
            for event in source.anchored_events(self.next_block, end):
                if event.root not in self._roots:
                    self._roots[event.root] = KnownRoot(
                        event.block_number,
                        event.submitter,
                        event.manifest_cid,
                        event.count,
                        event.tx_hash,
                    )
                    added += 1
            self.next_block = end + 1
            self._save()
        return added

    def check_source(self, source: AnchorLog) -> None:
        if source.chain_id != self.chain_id or source.registry.lower() != self.registry:
            raise RootCacheMismatch(
                f"the event source is registry {source.registry} on chain {source.chain_id}; "
                f"this root cache follows registry {self.registry} on chain {self.chain_id}"
            )

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            chain_id, registry = data["chain_id"], str(data["registry"]).lower()
            next_block = int(data["next_block"])
            roots = {bytes.fromhex(key): KnownRoot(**value) for key, value in data["roots"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"root cache {path} is unreadable: {exc}") from exc
        if chain_id != self.chain_id or registry != self.registry:
            raise RootCacheMismatch(
                f"root cache {path} follows registry {registry} on chain {chain_id}, "
                f"not {self.registry} on chain {self.chain_id}"
            )
        self._roots = roots
        self.next_block = max(self.next_block, next_block)

    def _save(self) -> None:
        if self._path is None:
            return
        data: dict[str, Any] = {
            "format": FORMAT,
            "chain_id": self.chain_id,
            "registry": self.registry,
            "next_block": self.next_block,
            "roots": {root.hex(): asdict(known) for root, known in self._roots.items()},
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=f".{self._path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def default_cache_path(cache_dir: Path, chain_id: int, registry: str) -> Path:
    """Where a client keeps the cache of one registry: one file per (chain, registry)."""
    return cache_dir / f"roots-{chain_id}-{registry.lower()}.json"
