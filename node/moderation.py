"""Operator moderation: a node's operator hides facts on this node (e.g. illegal content).

Separate from revocation (``node.revocation``), which is the contributor's signed decision and
reaches every replica: hiding is local, signed on nobody's behalf, and reversible. A hidden
fact stays in the catalog (so copies from peers are recognised, not fetched again) but leaves
the vector and keyword indexes, is answered ``Hidden`` (451) on reads and the gateway, and is
not handed to peers by sync (``index.sqlite_moderation``). ``/v1/status`` counts hidden facts.

Invariant: a fact is in the vector index iff it is stored, not hidden and not erased; hide and
unhide change catalog and index under the node's write lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import numpy as np

from node.errors import Hidden, InvalidInput, NotFound
from node.indexes import SearchIndexes
from node.limits import MAX_REASON_BYTES
from node.ports import FactRecords, HiddenFact, Moderation


class ModerationCatalog(FactRecords, Moderation, Protocol):
    """The catalog roles moderation uses."""


class Moderator:
    def __init__(
        self,
        catalog: ModerationCatalog,
        indexes: SearchIndexes,
        write_lock: asyncio.Lock,
        on_index_changed: Callable[[], None],
    ) -> None:
        self._catalog = catalog
        self._indexes = indexes
        self._write_lock = write_lock
        self._changed = on_index_changed

    async def hide(self, cid: str, reason: str | None) -> bool:
        """Hide a stored fact here; False when it was hidden already."""
        _check_reason(reason)
        async with self._write_lock:
            return await asyncio.to_thread(self._hide, cid, reason)

    def _hide(self, cid: str, reason: str | None) -> bool:
        row = self._catalog.hide(cid, reason)
        if row is None:
            if self._catalog.get(cid) is None:
                raise NotFound(f"no fact {cid}")
            return False
        self._indexes.remove(np.array([row], dtype=np.int64))
        self._changed()
        return True

    async def unhide(self, cid: str) -> bool:
        """Serve a hidden fact again; False when it was not hidden."""
        async with self._write_lock:
            return await asyncio.to_thread(self._unhide, cid)

    def _unhide(self, cid: str) -> bool:
        row = self._catalog.unhide(cid)
        if row is None:
            if self._catalog.get(cid) is None:
                raise NotFound(f"no fact {cid}")
            return False
        ids = np.array([row], dtype=np.int64)
        self._indexes.add(ids, self._catalog.vectors(ids), self._catalog.texts(ids))
        self._changed()
        return True

    def hidden(self, limit: int) -> list[HiddenFact]:
        return self._catalog.hidden_facts(limit)

    def check_served(self, cid: str) -> None:
        """``Hidden`` when this node hides ``cid`` (blocking: a catalog read)."""
        if self._catalog.is_hidden(cid):
            raise Hidden(f"fact {cid} is hidden by this node's operator")

    def count(self) -> int:
        return self._catalog.hidden_count()


def _check_reason(reason: str | None) -> None:
    if reason is None:
        return
    try:
        size = len(reason.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInput("reason is not valid Unicode (lone surrogate)", field="reason") from exc
    if size > MAX_REASON_BYTES:
        raise InvalidInput(f"reason is over {MAX_REASON_BYTES} bytes of UTF-8", field="reason")
