"""The peer directory on the wire: this node's adverts out, peers' adverts in (trio thread).

``DirectoryGossip`` publishes this node's advert (``p2p.directory``) through the publisher: at
start, when it changes (checked every second; at most one a second), ``CONNECT_DELAY`` seconds
after a new connection (so the newcomer hears it once the mesh formed) and every ``interval``
seconds in any case. Its set digests are computed in a worker thread and cached by the sink's
``set_version``. Coming in, ``validate`` is the directory topic's gossipsub validator (a
malformed advert is an offence of the forwarder, and changes nothing), ``read`` files valid
adverts under their signer (strict signing: the signer is the author) in the ``Directory``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from node.collections import RECORDS_SET
from node.ports import CollectionAdvert, DirectoryEntry, RecordSink
from p2p.directory import Directory, decode_advert, encode_advert, make_advert
from p2p.publisher import Publisher
from p2p.reconcile import ItemSet
from p2p.sync import MAX_SETS
from p2p.wire import InvalidEnvelope

log = logging.getLogger(__name__)

#: Seconds after a new connection before this node advertises again.
CONNECT_DELAY = 2.0


class DirectoryGossip:
    def __init__(
        self,
        interval: float,
        publisher: Publisher,
        refuses: Callable[[ID], bool],
        offence: Callable[[ID, str], None],
    ) -> None:
        self._interval = interval
        self._publisher = publisher
        self._refuses = refuses
        self._offence = offence
        self.table = Directory(interval)
        self._cache: tuple[int, dict[str, CollectionAdvert]] | None = None
        self._due: float | None = None
        #: Adverts accepted from peers, and this node's adverts published.
        self.accepted = 0
        self.published = 0

    def entries(self, connected: set[str]) -> list[DirectoryEntry]:
        return self.table.entries(time.time(), connected)

    def connected(self) -> None:
        """A peer connected: advertise again shortly (trio thread)."""
        soon = trio.current_time() + CONNECT_DELAY
        self._due = soon if self._due is None else min(self._due, soon)

    async def run(self, sink: RecordSink) -> None:
        """Advertise until cancelled."""
        last: bytes | None = None
        next_round = trio.current_time()
        while True:
            now = trio.current_time()
            due = self._due is not None and now >= self._due
            advert = await trio.to_thread.run_sync(self._advert, sink)
            if advert != last or due or now >= next_round:
                self._publisher.put_advert(advert)
                self.published += 1
                last, self._due, next_round = advert, None, now + self._interval
            await trio.sleep(min(1.0, self._interval))

    def _advert(self, sink: RecordSink) -> bytes:
        """This node's advert (worker thread)."""
        version = sink.set_version()
        if self._cache is None or self._cache[0] != version:
            sets = {}
            for name in sink.sets()[:MAX_SETS]:
                if name == RECORDS_SET:
                    continue  # not a collection: every node holds it
                items = ItemSet(sink.record_cids(name))
                sets[name] = CollectionAdvert(facts=len(items), digest=items.digest())
            self._cache = (version, sets)
        held = sink.held()
        return encode_advert(make_advert(sink.model_cid(), held.all, self._cache[1]))

    def validate(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """Gossipsub validator of the directory topic."""
        if self._refuses(forwarder):
            return False
        try:
            decode_advert(msg.data)
        except InvalidEnvelope as exc:
            self._offence(forwarder, f"directory: {exc.message}")
            return False
        return True

    async def read(self, subscription: Any, own: bytes, connected: Callable[[], set[str]]) -> None:
        """File validated adverts under their signer, until cancelled (``connected``: the
        peers connected now, whose entries a full table keeps)."""
        while True:
            msg = await subscription.get()
            if msg.from_id == own:
                continue
            try:
                advert = decode_advert(msg.data)  # validated: decoding again cannot fail
                author = ID(msg.from_id).to_base58()
            except (InvalidEnvelope, ValueError):
                continue
            seqno = int.from_bytes(msg.seqno, "big")
            if self.table.heard(author, advert, seqno, time.time(), connected()):
                self.accepted += 1
