"""Outbound gossip: signed fact records and anchor notices the node hands over, published on
the trio side, anchor notices first, facts packed 64 at a time into as few envelopes as the
limits allow (``p2p.wire.pack_envelopes``) and paced ``interval`` seconds apart, because
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

log = logging.getLogger(__name__)

#: Records packed per round (one or a few envelopes).
ROUND = 64


class Publisher:
    def __init__(self, facts_topic: str, anchors_topic: str, interval: float) -> None:
        self._facts_topic = facts_topic
        self._anchors_topic = anchors_topic
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
            while self._records:
                batch = [self._records.popleft() for _ in range(min(len(self._records), ROUND))]
                for envelope in wire.pack_envelopes(batch):
                    try:
                        await pubsub.publish(self._facts_topic, envelope)
                    except Exception:  # not published: sync delivers it
                        log.warning("publishing an envelope failed", exc_info=True)
                    await trio.sleep(self._interval)
                self.published += len(batch)
