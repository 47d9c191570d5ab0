"""The libp2p host of a knowhub node: identity, transports, gossip, sync, bootstrap redial.

``Libp2pNetwork`` implements ``node.ports.Network``. It runs py-libp2p on its own trio thread
(``p2p.bridge``) with settings chosen on purpose, because the library's defaults lose messages
silently (``p2p.stack``: TCP, Noise only, Yamux, gossipsub 1.1 with a 1 s heartbeat), strict
message signing, and publishing paced by an outbound queue of envelopes. Records travel on one
topic per replication set (``p2p.topics``: the node subscribes to those it holds); each node
advertises what it holds on the directory topic (``p2p.advertiser``) and answers peers'
federated queries (``p2p.query_protocol``).

Hostile peers. Exceptions a peer's bytes raise inside py-libp2p are contained per stream and per
pubsub task (``p2p.guard``) and count as offences, like rejected gossip and refused sync
requests; offences ban peers and penalise addresses (``p2p.peers``). Inbound connections are
admitted under per-address and total caps and give their slot back when they close, and only
trusted peers are dialled (``p2p.admission``); connections above the high watermark are trimmed
(``p2p.upkeep``); gossipsub scores peers (``p2p.scoring``); facts from gossip wait in a bounded
inbox (``p2p.inbox``). Should the network layer (host, pubsub, the node's tasks) fail anyway,
it is not silent: the failure is logged, ``status()`` reports it (``running`` false, ``error``
why; readiness and ``/metrics`` show it) and the layer is started again on the same listen
addresses, after ``restart_min`` seconds doubling to ``restart_max`` (back to ``restart_min``
once a run lasted a minute).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from node.errors import (
    InvalidAnswer,
    KnowhubError,
    Unavailable,
)
from node.origin import Origin
from node.ports import (
    AnchorEvent,
    DirectoryEntry,
    NetworkStatus,
    PeerAnswer,
    PeerRequest,
    PeerStatus,
    RecordSink,
)
from node.records import SignedRecord
from p2p import admission, upkeep
from p2p.admission import Admission, ConnectionLimits
from p2p.advertiser import DirectoryGossip
from p2p.bridge import TrioThread
from p2p.catchup import CatchUp
from p2p.connections import (
    Notifee,
    parse_peer_address,
    parse_peer_id,
    peer_of_address,
    resolved,
)
from p2p.directory import DIRECTORY_TOPIC
from p2p.guard import contain_pubsub_tasks, contain_streams, describe, supervise
from p2p.identity import load_or_create_identity
from p2p.inbox import Inbox
from p2p.notices import AnchorNotices
from p2p.peers import PeerBook, PeerPolicy
from p2p.publisher import Publisher
from p2p.query_protocol import (
    QUERY_PROTOCOL,
    QueryCounts,
    QueryLimits,
    QueryServer,
    ask_within,
)
from p2p.reconcile import ItemSet
from p2p.stack import new_gossipsub, new_libp2p_host
from p2p.sync import (
    SYNC_PROTOCOL,
    SyncServer,
    fetch_blocks_from,
    fetch_records_from,
    from_peers,
)
from p2p.topics import FACTS_TOPIC, GossipIn
from p2p.views import peer_statuses, score_bands
from p2p.wire import (
    AnchorNotice,
    encode_anchor_notice,
)

log = logging.getLogger(__name__)

if not os.environ.get("LIBP2P_DEBUG"):
    # Importing libp2p detaches its loggers (propagate=False, no handler) unless LIBP2P_DEBUG is
    # set; reattach them so libp2p's warnings reach the node's log like everything else.
    logging.getLogger("libp2p").propagate = True
    # ... except the auto-connector's INFO chatter every 10 s (it sets INFO on itself)
    logging.getLogger("libp2p.network.auto_connector").setLevel(logging.WARNING)

ANCHORS_TOPIC = "/knowhub/anchors/1"


@dataclass(frozen=True, slots=True)
class P2PConfig:
    key_path: Path
    listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: Sequence[str] = ()
    #: Seconds between catch-up syncs with every connected peer (also run on each connect:
    #: at once for trusted peers, later for others: ``p2p.catchup``).
    sync_interval: float = 30.0
    #: Offences, bans, penalised addresses, trust and redial backoff (``p2p.peers``).
    peers: PeerPolicy = field(default_factory=PeerPolicy)
    #: Watermarks and caps on connections (``p2p.admission``).
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    #: Facts from gossip waiting for the node, per forwarding peer and in all (``p2p.inbox``).
    inbox_per_peer: int = 512
    inbox_total: int = 4096
    #: Network layer restart backoff bounds, seconds.
    restart_min: float = 1.0
    restart_max: float = 60.0
    #: Seconds between two published envelopes (the libp2p per-peer queue holds 32).
    publish_interval: float = 0.01
    #: Seconds between two directory adverts of this node (``p2p.advertiser``); an entry
    #: expires after three intervals without one.
    directory_interval: float = 10.0
    #: Bounds on answering peers' federated queries (``p2p.query_protocol``).
    query_limits: QueryLimits = field(default_factory=QueryLimits)


class Libp2pNetwork:
    def __init__(self, config: P2PConfig) -> None:
        self._config = config
        self._trio = TrioThread()
        self._sink: RecordSink | None = None
        self._host: IHost | None = None
        self._pubsub: Pubsub | None = None
        self._peer_id = ""
        self._listen: list[str] = []
        self._book = PeerBook(config.peers)
        self._admission = Admission(config.limits, self._book.ip_penalised)
        self._inbox: Inbox[SignedRecord] = Inbox(config.inbox_per_peer, config.inbox_total)
        self._gossip: GossipSub | None = None
        self._catchup = CatchUp(
            self._book, config.sync_interval, partial(self.deliver, origin=Origin.SYNC)
        )
        self._publisher = Publisher(ANCHORS_TOPIC, DIRECTORY_TOPIC, config.publish_interval)
        self._notices = AnchorNotices(self._trio, self._refuses, self._offence)
        self._records_in = GossipIn(self._inbox, self._refuses, self._offence)
        self._directory = DirectoryGossip(
            config.directory_interval, self._publisher, self._refuses, self._offence
        )
        self._stop: trio.Event | None = None
        self._to_disconnect: set[ID] = set()
        self.received = 0
        self.rejected = 0
        self.refused = 0
        self._query_counts = QueryCounts()  # both roles, across restarts of the layer
        #: Why the network layer is down (None while it runs); the last failure stays in
        #: ``last_failure`` after a restart, ``restarts`` counts them.
        self.failure: str | None = None
        self.last_failure: str | None = None
        self.restarts = 0
        self._bound: list[multiaddr.Multiaddr] = []
        self._digest_cache: tuple[int, str, int] | None = None

    # -- node.ports.Network (asyncio side) ----------------------------------------------------

    async def start(self, sink: RecordSink) -> None:
        self._sink = sink
        await self._trio.start(self._main)
        log.info("libp2p peer %s listening on %s", self._peer_id, ", ".join(self._listen))

    def publish(self, records: Sequence[SignedRecord]) -> None:
        if records:
            self._trio.call_soon(self._publisher.put_records, list(records))

    def announce_anchor(self, chain_id: int, registry: str, event: AnchorEvent) -> None:
        notice = AnchorNotice(
            chain_id=chain_id,
            registry=bytes.fromhex(registry[2:]),
            root=event.root,
            manifest_cid=event.manifest_cid,
            tx_hash=bytes.fromhex(event.tx_hash[2:]),
            block_number=event.block_number,
        )
        self._trio.call_soon(self._publisher.put_notice, encode_anchor_notice(notice))

    def peers(self) -> list[PeerStatus]:
        return peer_statuses(self._host, self._book, self._gossip, FACTS_TOPIC)

    def directory(self) -> list[DirectoryEntry]:
        return self._directory.entries(self._connected_ids())

    def _connected_ids(self) -> set[str]:
        """Connected peer ids; a read of the swarm's connection map, from any thread."""
        host = self._host
        return set() if host is None else {str(p) for p in list(host.get_connected_peers())}

    def down(self) -> str | None:
        """Why the network layer is not running now, or None when it is."""
        if self._trio.error is not None:
            return f"libp2p thread ended: {describe(self._trio.error)}"
        return self.failure

    def status(self) -> NetworkStatus:
        host = self._host
        digest, signed = self._digest()
        down = self.down()
        return NetworkStatus(
            peer_id=self._peer_id,
            listen_addresses=list(self._listen),
            connected_peers=len(host.get_connected_peers()) if host is not None else 0,
            facts_published=self._publisher.published,
            facts_received=self.received,
            messages_rejected=self.rejected,
            messages_accepted=self._notices.accepted + self._records_in.accepted,
            syncs=self._catchup.syncs,
            last_sync_error=self._catchup.last_error,
            fact_set_digest=digest,
            signed_facts=signed,
            anchor_notices=self._notices.received,
            messages_refused=self.refused,
            connections_refused=self._admission.refused,
            inbox_dropped=self._inbox.dropped,
            banned_peers=sum(1 for peer, _ in self._book if self._book.is_banned(peer)),
            score_bands=score_bands(self._host, self._book, self._gossip, FACTS_TOPIC),
            running=host is not None and down is None,
            error=down if down is not None else (None if host is not None else "not running"),
            bootstrap_peers=self._bootstrap_peers(),
            **asdict(self._query_counts),
        )

    def _bootstrap_peers(self) -> int:
        """Configured bootstrap peers other than this node (cluster lists name it too)."""
        return sum(
            1
            for peer in map(peer_of_address, self._config.bootstrap)
            if peer not in (None, self._peer_id)
        )

    def _digest(self) -> tuple[str, int]:
        assert self._sink is not None
        count = self._sink.set_version()
        if self._digest_cache is None or self._digest_cache[0] != count:
            items = ItemSet(self._sink.record_cids())
            self._digest_cache = (count, items.digest(), len(items))
        return self._digest_cache[1], self._digest_cache[2]

    async def connect(self, address: str) -> str:
        info = parse_peer_address(address)
        key = str(info.peer_id)
        self._book.unban(key)
        self._book.protect(key)  # the operator asked for this peer: trusted, never trimmed

        async def dial() -> None:
            host = self._live_host()
            with trio.fail_after(10):
                await host.connect(await resolved(info))

        try:
            await self._trio.call(dial)
        except Exception as exc:  # trio timeouts, OSError, swarm and security errors alike
            raise Unavailable(f"cannot connect to {address}: {exc!r}") from exc
        return str(info.peer_id)

    async def fetch_blocks(self, cids: Sequence[str]) -> dict[str, bytes]:
        return await self._trio.call(self._from_peers, fetch_blocks_from, list(cids), dict)

    async def fetch_records(self, cids: Sequence[str]) -> list[SignedRecord]:
        found: list[SignedRecord] = await self._trio.call(
            self._from_peers, fetch_records_from, list(cids), list
        )
        return found

    async def _from_peers(self, fetch: Any, cids: list[str], kind: type) -> Any:
        return await from_peers(self._live_host(), fetch, cids, kind)

    async def ask(self, peer_id: str, query: PeerRequest, budget: float) -> PeerAnswer:
        peer = parse_peer_id(peer_id)
        try:
            answer, size = await self._trio.call(ask_within, self._live_host, peer, query, budget)
        except InvalidAnswer as exc:
            self.penalise(peer_id, exc.message)
            raise
        self._query_counts.query_bytes += size
        return answer

    def penalise(self, peer_id: str, reason: str) -> None:
        peer = parse_peer_id(peer_id)
        self._trio.call_soon(self._offence, peer, reason)

    async def disconnect(self, peer_id: str, block_seconds: float) -> None:
        peer = parse_peer_id(peer_id)
        self._book.ban(peer_id, block_seconds)

        async def hang_up() -> None:
            host = self._host
            if host is not None and peer in host.get_connected_peers():
                await host.disconnect(peer)

        await self._trio.call(hang_up)

    async def close(self) -> None:
        if self._stop is not None:
            self._trio.call_soon(self._stop.set)
            try:
                await self._trio.join()
            except (TimeoutError, Exception):
                log.warning("libp2p thread did not stop cleanly", exc_info=True)

    # -- trio side -----------------------------------------------------------------------------

    def _live_host(self) -> IHost:
        if self._host is None:
            raise Unavailable(f"the network layer is down: {self.down() or 'starting'}")
        return self._host

    async def _main(self, ready: Callable[[], None]) -> None:
        """Run the network layer; restart it with backoff whenever it fails after starting."""
        key_pair = load_or_create_identity(self._config.key_path)
        self._stop = trio.Event()
        listen = [multiaddr.Multiaddr(a) for a in self._config.listen]

        async def run(up: Callable[[], None]) -> None:
            # after a restart, the same ports as before: the addresses peers know stay valid
            await self._session(key_pair, self._bound or listen, up)

        await supervise(
            run,
            stop=self._stop,
            ready=ready,
            on_state=self._layer_state,
            restart_min=self._config.restart_min,
            restart_max=self._config.restart_max,
        )

    def _layer_state(self, failure: str | None) -> None:
        """``supervise`` says the layer is down (why) or running (None)."""
        if failure is not None:
            self.failure = self.last_failure = failure
        elif self.failure is not None:
            self.failure = None
            self.restarts += 1

    async def _session(
        self, key_pair: Any, listen: list[multiaddr.Multiaddr], up: Callable[[], None]
    ) -> None:
        """One run of the host and everything on it, until ``_stop`` is set or it fails."""
        host = new_libp2p_host(key_pair, self._config.limits.max_connections)
        contain_streams(host, self._fault)
        book = self._book
        admission.install(
            cast(Swarm, host.get_network()), self._admission, book.may_dial, book.dialled
        )
        gossipsub = new_gossipsub(book.is_trusted, book.is_banned)
        pubsub = Pubsub(host, gossipsub, strict_signing=True)
        assert self._stop is not None and self._sink is not None
        server = SyncServer(self._sink, self._trio, self._fault, self._refuses)
        queries = QueryServer(
            self._sink,
            self._trio,
            self._fault,
            self._refuses,
            self._config.query_limits,
            self._query_counts,
        )
        try:
            self._host, self._pubsub, self._gossip = host, pubsub, gossipsub
            self._peer_id = host.get_id().to_string()
            async with (
                host.run(listen_addrs=listen),
                trio.open_nursery() as nursery,
                background_trio_service(pubsub),
                background_trio_service(gossipsub),
            ):
                contain_pubsub_tasks(pubsub, self._fault)
                admission.gate_pubsub_streams(pubsub, self._refuses)
                await pubsub.wait_until_ready()
                pubsub.set_topic_validator(ANCHORS_TOPIC, self._notices.validate, False)
                pubsub.set_topic_validator(DIRECTORY_TOPIC, self._directory.validate, False)
                notices = await pubsub.subscribe(ANCHORS_TOPIC)
                adverts = await pubsub.subscribe(DIRECTORY_TOPIC)
                own = host.get_id().to_bytes()
                host.set_stream_handler(SYNC_PROTOCOL, server.handle)
                host.set_stream_handler(QUERY_PROTOCOL, queries.handle)
                redialler = upkeep.Redialler(host, book, nursery)
                host.get_network().register_notifee(
                    Notifee(self._connected, self._disconnected, redialler.left)
                )
                self._listen = [f"{a}" for a in host.get_addrs()]
                self._bound = list(host.get_transport_addrs()) or self._bound
                # topics of collections that connected peers advertise (not any name a
                # stranger's advert spreads: those would fill the topic slots for good)
                nursery.start_soon(
                    self._records_in.run,
                    pubsub,
                    self._sink,
                    own,
                    lambda: self._directory.table.collections(self._connected_ids()),
                )
                nursery.start_soon(self._directory.read, adverts, own, self._connected_ids)
                nursery.start_soon(self._directory.run, self._sink)
                nursery.start_soon(self._ingest)
                nursery.start_soon(self._notices.read, notices, own, self._sink)
                nursery.start_soon(self._publisher.run, pubsub)
                nursery.start_soon(self._catchup.run, host, self._sink)
                nursery.start_soon(upkeep.hang_up_marked, host, self._to_disconnect)
                nursery.start_soon(upkeep.trim, host, book, self._config.limits)
                for address in self._config.bootstrap:
                    nursery.start_soon(upkeep.keep_connected, host, book, address)
                up()
                await self._stop.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._host = self._pubsub = self._gossip = None
            self._listen = []
            self._to_disconnect.clear()
            self._book.all_disconnected()

    def _connected(self, peer: ID, ip: str | None) -> None:
        key = str(peer)
        self._book.connected(key, ip)
        if self._book.is_banned(key):
            self._to_disconnect.add(peer)
            return
        self._catchup.connected(peer)
        self._directory.connected()

    def _disconnected(self, peer: ID) -> None:
        self._book.disconnected(str(peer))

    def _refuses(self, peer: ID) -> bool:
        """Whether to refuse what ``peer`` sends unread (``PeerBook.refuses``); counted."""
        key = str(peer)
        if self._book.refuses(key):
            self.refused += 1
            if self._book.is_banned(key):
                self._to_disconnect.add(peer)
            return True
        return False

    def _offence(self, forwarder: ID, reason: str) -> None:
        """Count an offence (a rejected gossip message, a refused sync request, a stream whose
        bytes raised) against a peer and its address; ban and disconnect it at the limit."""
        key = str(forwarder)
        self.rejected += 1
        log.debug("offence by %s: %s", key, reason)
        if self._book.offence(key):
            log.warning(
                "banning %s after %d offences (last: %s)",
                key,
                self._book.recent_offences(key),
                reason,
            )
            self._to_disconnect.add(forwarder)

    def _fault(self, peer: ID | None, reason: str) -> None:
        """A stream or pubsub task failed on what ``peer`` sent (``p2p.guard``, ``p2p.sync``)."""
        host = self._host
        if peer is None or (host is not None and peer == host.get_id()):
            return  # nobody to blame (logged where it happened)
        self._offence(peer, reason)

    async def _ingest(self) -> None:
        """Hand verified facts to the node, all that waits from up to 16 forwarders at a time
        (the node embeds them with its own model, so batches keep the model busy)."""
        while True:
            for who, group in (await self._inbox.take()).items():
                await self.deliver(group, who, Origin.GOSSIP)

    async def deliver(self, facts: list[SignedRecord], peer: str, origin: Origin) -> int:
        """Give verified records to the node (from gossip or sync); count them for ``peer``."""
        assert self._sink is not None
        try:
            created = await self._trio.to_asyncio(self._sink.receive_records(facts, peer, origin))
        except KnowhubError as exc:
            log.warning("node refused %d facts from %s: %s", len(facts), peer, exc.message)
            return 0
        self._book.delivered(peer, len(facts))
        self.received += len(facts)
        return created
