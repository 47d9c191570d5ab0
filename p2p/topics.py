"""Gossip topics of records, one per replication set, and the node's side of them.

Topics (docs/protocol.md, section 3). Facts of the default collection and every record of
another kind travel on ``/knowhub/facts/1``, the base topic, which every node subscribes to
(nodes from before collections know only it); the facts of collection ``c`` travel on
``/knowhub/facts/1/c/<c>`` (``topic_of_set``, ``node.collections.topic_set``). A publisher
never mixes topics in one envelope (``topic_of``).

Rules (``node.collections.outside_set``). An envelope on a collection topic holds facts of that
collection only: anything else is invalid (an offence, like any invalid gossip). The base topic
accepts facts of any collection: an older node publishes every fact there; a node that does not
hold the collection drops them at ingest without penalty, as before.

``GossipIn`` owns what comes in: the validators (envelope checks, the topic rule, the node's
judgement), validated messages waiting for their subscription reader, the inbox hand-off, and
which topics the node subscribes to: the base topic and the held collections' topics; a node
holding every collection (``*``) also subscribes to each collection it learns of (its own
catalog's, the peer directory's, peers' gossipsub subscriptions), at most
``MAX_COLLECTION_TOPICS`` of them (the first learned; beyond, those facts come by sync only).
Topics are never left while the host runs. Trio thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from node.collections import BASE_SET, RECORDS_SET, Collections, outside_set, set_of, topic_set
from node.errors import InvalidFact
from node.facts import check_collection
from node.ports import RecordSink
from node.records import SignedRecord
from p2p.checks import EnvelopeChecks
from p2p.inbox import Inbox
from p2p.wire import InvalidEnvelope

log = logging.getLogger(__name__)

FACTS_TOPIC = "/knowhub/facts/1"
COLLECTION_TOPIC_PREFIX = FACTS_TOPIC + "/c/"
#: Collection topics a node subscribes to at most (a ``*`` node learns them from peers).
MAX_COLLECTION_TOPICS = 256
#: Validated messages remembered until their subscription reader takes them.
_VALIDATED_MAX = 4096


def topic_of_set(name: str) -> str:
    """The topic that carries set ``name``."""
    name = topic_set(name)
    return FACTS_TOPIC if name == BASE_SET else COLLECTION_TOPIC_PREFIX + name


def topic_of(record: SignedRecord) -> str:
    """The topic a record is published on."""
    return topic_of_set(set_of(record))


def set_of_topic(topic: str) -> str | None:
    """The ``topic_set`` name of a records topic, or None for another topic."""
    if topic == FACTS_TOPIC:
        return BASE_SET
    if not topic.startswith(COLLECTION_TOPIC_PREFIX):
        return None
    name = topic.removeprefix(COLLECTION_TOPIC_PREFIX)
    try:
        return check_collection(name)
    except InvalidFact:
        return None


class GossipIn:
    def __init__(
        self,
        inbox: Inbox[SignedRecord],
        refuses: Callable[[ID], bool],
        offence: Callable[[ID, str], None],
    ) -> None:
        self._inbox = inbox
        self._refuses = refuses
        self._offence = offence
        self._checks = EnvelopeChecks()
        self._validated: dict[bytes, tuple[list[SignedRecord], str]] = {}
        self._sink: RecordSink | None = None
        #: Sets subscribed to in this run of the host.
        self.subscribed: set[str] = set()
        #: Gossip messages of records that passed validation.
        self.accepted = 0

    async def run(
        self,
        pubsub: Pubsub,
        sink: RecordSink,
        own: bytes,
        learned: Callable[[], Iterable[str]],
    ) -> None:
        """Subscribe to the base topic and the held sets' topics, and keep following the sets
        ``learned`` (directory adverts) and peers' subscriptions name, until cancelled."""
        self._sink = sink
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    held = sink.held()
                    # the catalog's collections: a read, so off the trio loop
                    stored = (
                        [] if held.names is not None else await trio.to_thread.run_sync(sink.sets)
                    )
                    for name in self._wanted(pubsub, held, stored, learned):
                        await self._subscribe(pubsub, name, own, nursery)
                    await trio.sleep(1.0)
        finally:
            self.subscribed.clear()
            self._validated.clear()

    def _wanted(
        self,
        pubsub: Pubsub,
        held: Collections,
        stored: list[str],
        learned: Callable[[], Iterable[str]],
    ) -> list[str]:
        if held.names is not None:
            wanted = [BASE_SET, *sorted(held.names)]
        else:
            peers = (set_of_topic(t) for t in list(pubsub.peer_topics))
            wanted = [BASE_SET, *stored, *learned(), *(n for n in peers if n is not None)]
        named = (topic_set(n) for n in wanted if n != RECORDS_SET)
        out = [n for n in dict.fromkeys(named) if n not in self.subscribed]
        room = MAX_COLLECTION_TOPICS + 1 - len(self.subscribed)  # + 1: the base topic
        if len(out) > room:
            log.warning("more than %d collection topics: %d not followed", room, len(out) - room)
        return out[: max(room, 0)]

    async def _subscribe(
        self, pubsub: Pubsub, name: str, own: bytes, nursery: trio.Nursery
    ) -> None:
        topic = topic_of_set(name)
        pubsub.set_topic_validator(topic, partial(self._validate, name), False)
        subscription = await pubsub.subscribe(topic)
        self.subscribed.add(name)
        nursery.start_soon(self._read, subscription, own)
        log.debug("subscribed to %s", topic)

    def _validate(self, set_name: str, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """Gossipsub validator: False drops the message and stops it from being forwarded."""
        if self._refuses(forwarder):
            return False
        try:
            records = self._checks.check(msg.data)
        except InvalidEnvelope as exc:
            self._offence(forwarder, exc.message)
            return False
        wrong = outside_set(records, set_name)
        assert self._sink is not None
        # what only the node's state can tell (catalog reads)
        invalid = wrong if wrong is not None else self._sink.judge(records)
        if invalid is not None:
            self._offence(forwarder, invalid)
            return False
        if len(self._validated) > _VALIDATED_MAX:
            self._validated.clear()
        self._validated[msg.from_id + msg.seqno] = (records, str(forwarder))
        self.accepted += 1
        return True

    async def _read(self, subscription: Any, own: bytes) -> None:
        """Put validated records in the inbox, credited to the peer that forwarded them."""
        while True:
            msg = await subscription.get()
            if msg.from_id == own:
                continue
            checked = self._validated.pop(msg.from_id + msg.seqno, None)
            if checked is None:
                continue  # not validated by us: never accept unvalidated data
            records, forwarder = checked
            if not self._inbox.put(records, forwarder):
                log.debug("inbox full: %d records from %s left to sync", len(records), forwarder)
