"""``MemoryNetwork``: the ``node.ports.Network`` fake, in one process and one event loop.

Nodes built on it talk through a ``MemoryHub`` instead of libp2p. It keeps the contract the
real adapter (``p2p.host.Libp2pNetwork``) keeps, and ``tests/congruence/test_network.py`` holds
the two to the same answers:

- ``publish`` never blocks or fails; every connected peer gets the records as gossip (origin
  ``GOSSIP``), each one checked on the way in as bytes from elsewhere (``node.kinds``), then
  judged by the receiving node (``RecordSink.judge``); an accepted message is forwarded to
  the receiver's other peers once (as gossipsub relays what its validator accepts), a
  rejected one is neither delivered nor forwarded and counts as an offence of the sender;
- ``connect`` dials a peer (its address is ``/memory/<peer id>``) and both sides catch up by
  pulling what they lack (origin ``SYNC``), as the real catch-up sync does on connect;
- ``fetch_records`` and ``fetch_blocks`` ask connected peers; what comes back is verified.

Invariant: nothing unverified reaches a sink. Not modelled: transport, scoring and bans,
admission limits, loss and reordering (what ``p2p`` tests with real hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.cid import cid_to_bytes, verify_block
from node.errors import InvalidInput, KnowhubError, PeerRefused, PeerUnavailable, Unavailable
from node.federation import refusal_code
from node.kinds import verify_record
from node.origin import Origin
from node.ports import (
    AnchorEvent,
    DirectoryEntry,
    NetworkStatus,
    PeerStatus,
    RecordSink,
    RemoteAnswer,
    RemoteQuery,
)
from node.records import SignedRecord

log = logging.getLogger(__name__)

ADDRESS_PREFIX = "/memory/"


@dataclass
class MemoryHub:
    """The medium: every ``MemoryNetwork`` started on it, by peer id."""

    members: dict[str, MemoryNetwork] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def new_id(self) -> str:
        return f"memory-peer-{next(self._ids)}"


class MemoryNetwork:
    def __init__(self, hub: MemoryHub, bootstrap: Sequence[str] = ()) -> None:
        self._hub = hub
        self._bootstrap = list(bootstrap)
        self.peer_id = hub.new_id()
        self._sink: RecordSink | None = None
        self._peers: dict[str, float] = {}  # connected peer id -> since (loop time)
        self._received: dict[str, int] = {}
        self._rejected: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: set[bytes] = set()  # message ids already handled (gossip forwards once)
        self.published = 0
        self.accepted = 0
        self.syncs = 0
        self.anchor_notices = 0

    @property
    def address(self) -> str:
        return ADDRESS_PREFIX + self.peer_id

    # -- node.ports.Network -------------------------------------------------------------------

    async def start(self, sink: RecordSink) -> None:
        self._sink = sink
        self._hub.members[self.peer_id] = self
        for address in self._bootstrap:
            with contextlib.suppress(KnowhubError):  # a bootstrap peer may start later
                await self.connect(address)

    def publish(self, records: Sequence[SignedRecord]) -> None:
        if not records:
            return
        self.published += len(records)
        wire = [(r.block, r.signature_bytes) for r in records]
        self._seen.add(_message_id(wire, self.peer_id))
        self._forward(wire, self.peer_id, except_peer=None)

    def _forward(
        self, wire: list[tuple[bytes, bytes]], origin: str, except_peer: str | None
    ) -> None:
        for peer in list(self._peers):
            other = self._hub.members.get(peer)
            if other is not None and peer != except_peer:
                self._spawn(other._gossip(wire, origin, self.peer_id))

    def announce_anchor(self, chain_id: int, registry: str, event: AnchorEvent) -> None:
        for peer in list(self._peers):
            other = self._hub.members.get(peer)
            if other is not None and other._sink is not None:
                other.anchor_notices += 1
                self._spawn(other._sink.anchor_announced(chain_id, registry))

    def peers(self) -> list[PeerStatus]:
        known = set(self._peers) | set(self._received) | set(self._rejected)
        return [
            PeerStatus(
                peer_id=peer,
                addresses=[ADDRESS_PREFIX + peer],
                connected_since=self._peers.get(peer),
                facts_received=self._received.get(peer, 0),
                rejected_messages=self._rejected.get(peer, 0),
                recent_offences=self._rejected.get(peer, 0),
            )
            for peer in sorted(known)
        ]

    def directory(self) -> list[DirectoryEntry]:
        return []  # the directory is being built (issue 21): no adverts yet

    def status(self) -> NetworkStatus:
        assert self._sink is not None
        cids = self._sink.record_cids()
        return NetworkStatus(
            peer_id=self.peer_id,
            listen_addresses=[self.address],
            connected_peers=len(self._peers),
            facts_published=self.published,
            facts_received=sum(self._received.values()),
            messages_rejected=sum(self._rejected.values()),
            messages_accepted=self.accepted,
            syncs=self.syncs,
            last_sync_error=None,
            fact_set_digest=hashlib.sha256(b"".join(sorted(cids))).hexdigest(),
            signed_facts=len(cids),
            anchor_notices=self.anchor_notices,
            bootstrap_peers=len(self._bootstrap),
        )

    async def connect(self, address: str) -> str:
        if not address.startswith(ADDRESS_PREFIX):
            raise InvalidInput(f"not a memory address: {address}", field="address")
        peer = address.removeprefix(ADDRESS_PREFIX)
        other = self._hub.members.get(peer)
        if other is None or other is self:
            raise Unavailable(f"cannot connect to {address}: no such peer")
        loop_time = asyncio.get_running_loop().time()
        self._peers[peer] = loop_time
        other._peers[self.peer_id] = loop_time
        await self._pull_from(other)
        await other._pull_from(self)
        return peer

    async def disconnect(self, peer_id: str, block_seconds: float) -> None:
        self._peers.pop(peer_id, None)
        other = self._hub.members.get(peer_id)
        if other is not None:
            other._peers.pop(self.peer_id, None)

    async def fetch_blocks(self, cids: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for other in self._connected():
            for cid in cids:
                if cid in found or other._sink is None:
                    continue
                block = await other._sink.get_block(cid)
                if block is not None and verify_block(cid, block):
                    found[cid] = block
        return found

    async def fetch_records(self, cids: Sequence[str]) -> list[SignedRecord]:
        found: dict[str, SignedRecord] = {}
        for other in self._connected():
            missing = [cid_to_bytes(c) for c in cids if c not in found]
            if not missing or other._sink is None:
                continue
            for record in self._verified(other._sink.signed_records(missing), other.peer_id):
                found[record.cid] = record
        return list(found.values())

    async def ask(self, peer_id: str, query: RemoteQuery, budget: float) -> RemoteAnswer:
        other = self._hub.members.get(peer_id)
        if other is None or peer_id not in self._peers or other._sink is None:
            raise PeerUnavailable(f"{peer_id} is not connected")
        try:
            async with asyncio.timeout(budget):
                return await other._sink.answer_query(query, self.peer_id)
        except TimeoutError as exc:
            raise PeerUnavailable(f"{peer_id} gave no answer in {budget} s", timeout=True) from exc
        except KnowhubError as exc:
            code = refusal_code(exc)
            raise PeerRefused(f"{peer_id} refused: {code}: {exc.message}", reason=code) from exc

    def penalise(self, peer_id: str, reason: str) -> None:
        self._offence(peer_id, reason)

    async def close(self) -> None:
        for peer in list(self._peers):
            await self.disconnect(peer, 0.0)
        self._hub.members.pop(self.peer_id, None)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the other side ------------------------------------------------------------------------

    async def _gossip(self, wire: list[tuple[bytes, bytes]], origin: str, sender: str) -> None:
        """A gossip message published by ``origin``, forwarded by ``sender``: validated, then
        delivered and forwarded to this node's other peers (as gossipsub relays what its
        validator accepts), each message once."""
        assert self._sink is not None
        message = _message_id(wire, origin)
        if message in self._seen:
            return
        self._seen.add(message)
        try:
            records = [verify_record(block, signature) for block, signature in wire]
        except KnowhubError as exc:
            self._offence(sender, exc.message)
            return
        reason = self._sink.judge(records)
        if reason is not None:
            self._offence(sender, reason)
            return
        self.accepted += 1
        self._forward(wire, origin, except_peer=sender)
        await self._deliver(records, sender, Origin.GOSSIP)

    async def _pull_from(self, other: MemoryNetwork) -> None:
        """Catch-up: fetch what ``other`` has and this node lacks."""
        if self._sink is None or other._sink is None:
            return
        mine = set(self._sink.record_cids())
        lacking = [c for c in other._sink.record_cids() if c not in mine]
        self.syncs += 1
        if lacking:
            records = self._verified(other._sink.signed_records(lacking), other.peer_id)
            await self._deliver(records, other.peer_id, Origin.SYNC)

    def _verified(self, pairs: Sequence[tuple[bytes, str]], peer: str) -> list[SignedRecord]:
        out = []
        for block, signature in pairs:
            try:
                out.append(verify_record(block, signature))
            except KnowhubError as exc:
                self._offence(peer, exc.message)
        return out

    async def _deliver(self, records: list[SignedRecord], peer: str, origin: Origin) -> None:
        assert self._sink is not None
        if not records:
            return
        try:
            await self._sink.receive_records(records, peer, origin)
        except KnowhubError as exc:
            log.warning("node refused %d records from %s: %s", len(records), peer, exc.message)
            return
        self._received[peer] = self._received.get(peer, 0) + len(records)

    def _offence(self, peer: str, reason: str) -> None:
        log.debug("offence by %s: %s", peer, reason)
        self._rejected[peer] = self._rejected.get(peer, 0) + 1

    def _connected(self) -> list[MemoryNetwork]:
        return [m for p in self._peers if (m := self._hub.members.get(p)) is not None]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _message_id(wire: list[tuple[bytes, bytes]], origin: str) -> bytes:
    digest = hashlib.sha256(origin.encode())
    for block, signature in wire:
        digest.update(block)
        digest.update(signature)
    return digest.digest()
