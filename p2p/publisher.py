"""Outbound gossip: signed records, anchor notices and directory adverts, published on the trio
side, notices and adverts first, records grouped by topic (``p2p.topics.topic_of``: an
envelope never mixes topics), packed 64 at a time into as few envelopes as the limits allow
(``p2p.wire.pack_envelopes``) and paced ``interval`` seconds apart, because
py-libp2p drops messages on a full per-peer queue (32); what is lost anyway is recovered by
sync. Both queues live across network-layer restarts; ``put_*`` run on the trio thread.
"""

from __future__ import annotations

import logging
from collections import deque

import trio
from libp2p.pubsub.pubsub import Pubsub

from node.records import SignedRecord
from p2p import wire
from p2p.topics import topic_of

log = logging.getLogger(__name__)

#: Records packed per round (one or a few envelopes).
ROUND = 64


class Publisher:
    def __init__(self, anchors_topic: str, directory_topic: str, interval: float) -> None:
        self._anchors_topic = anchors_topic
        self._directory_topic = directory_topic
        self._advert: bytes | None = None
        self._interval = interval
        self._records: deque[SignedRecord] = deque()
        self._notices: deque[bytes] = deque()
        self._wake = trio.Event()
        #: Fact records published so far.
        self.published = 0

    def put_records(self, records: list[SignedRecord]) -> None:
        self._records.extend(records)
        self._wake.set()

    def put_notice(self, data: bytes) -> None:
        self._notices.append(data)
        self._wake.set()

    def put_advert(self, data: bytes) -> None:
        """This node's directory advert (only the latest waiting one is sent)."""
        self._advert = data
        self._wake.set()

    async def run(self, pubsub: Pubsub) -> None:
        """Publish what is queued, then wait for more (until cancelled with the session)."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._notices:
                try:
                    await pubsub.publish(self._anchors_topic, self._notices.popleft())
                except Exception:  # not published (no peers, a closing host): a hint only
                    log.warning("publishing an anchor notice failed", exc_info=True)
            if self._advert is not None:
                advert, self._advert = self._advert, None
                try:
                    await pubsub.publish(self._directory_topic, advert)
                except Exception:  # not published: the next one will be
                    log.warning("publishing a directory advert failed", exc_info=True)
            while self._records:
                batch = [self._records.popleft() for _ in range(min(len(self._records), ROUND))]
                by_topic: dict[str, list[SignedRecord]] = {}
                for record in batch:
                    by_topic.setdefault(topic_of(record), []).append(record)
                for topic, records in by_topic.items():
                    for envelope in wire.pack_envelopes(records):
                        try:
                            await pubsub.publish(topic, envelope)
                        except Exception:  # not published: sync delivers it
                            log.warning("publishing an envelope failed", exc_info=True)
                        await trio.sleep(self._interval)
                self.published += len(batch)
