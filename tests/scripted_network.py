"""A scripted network for federated-query tests: the asking node's memory network, with a
peer directory and peers' answers a test sets (a real node's ``answer_query`` path, or one a
test tampers with the way a hostile peer would). It records asks and penalties."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from node.errors import PeerUnavailable
from node.memory_network import MemoryHub, MemoryNetwork
from node.ports import DirectoryEntry, PeerAnswer, PeerRequest

#: A peer's handler of requests: RemoteQuery -> RemoteAnswer, PoolsQuery -> PoolsAnswer,
#: FetchQuery -> FetchAnswer (a test may return anything, as a hostile peer would).
Handler = Callable[[Any], Awaitable[Any]]


class ScriptedNetwork(MemoryNetwork):
    def __init__(self) -> None:
        super().__init__(MemoryHub())
        self.entries: list[DirectoryEntry] = []
        self.answers: dict[str, Handler] = {}
        self.asked: list[tuple[str, Any]] = []  # (peer, the PeerRequest asked)
        self.penalties: list[tuple[str, str]] = []

    def directory(self) -> list[DirectoryEntry]:
        return list(self.entries)

    async def ask(self, peer_id: str, query: PeerRequest, budget: float) -> PeerAnswer:
        self.asked.append((peer_id, query))
        try:
            async with asyncio.timeout(budget):
                answer: PeerAnswer = await self.answers[peer_id](query)
                return answer
        except TimeoutError as exc:
            raise PeerUnavailable("no answer", timeout=True) from exc

    def penalise(self, peer_id: str, reason: str) -> None:
        self.penalties.append((peer_id, reason))
