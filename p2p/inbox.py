"""Facts received by gossip, waiting to be handed to the node: bounded per forwarder and in all.

A flood must wait for sync rather than grow memory: a batch from a forwarder that already has
``per_source`` facts waiting, or that would take the inbox past ``total``, is dropped and
counted (``dropped``); the facts are not lost to an honest network, since catch-up sync fetches
whatever this node lacks from its peers. Batches are taken grouped by forwarder, oldest
forwarder first, so one busy peer cannot starve the others.

Lives on the trio side (``p2p.host``); pure apart from the ``trio.Event`` that wakes the taker.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Inbox(Generic[T]):
    def __init__(self, per_source: int = 512, total: int = 4096) -> None:
        self.per_source = per_source
        self.total = total
        self._groups: OrderedDict[str, list[T]] = OrderedDict()
        self._count = 0
        self._ready = trio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return self._count

    def put(self, items: list[T], source: str) -> bool:
        """Queue ``items`` from ``source``; False (and counted) when over a bound."""
        waiting = len(self._groups.get(source, ()))
        if waiting + len(items) > self.per_source or self._count + len(items) > self.total:
            self.dropped += len(items)
            return False
        self._groups.setdefault(source, []).extend(items)
        self._count += len(items)
        self._ready.set()
        return True

    async def take(self, max_sources: int = 16) -> dict[str, list[T]]:
        """Wait for something, then take all that waits from up to ``max_sources`` sources."""
        while not self._groups:
            self._ready = trio.Event()
            await self._ready.wait()
        taken: dict[str, list[T]] = {}
        while self._groups and len(taken) < max_sources:
            source, items = self._groups.popitem(last=False)
            taken[source] = items
            self._count -= len(items)
        return taken
