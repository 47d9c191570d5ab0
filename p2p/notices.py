"""Anchor notices coming in on ``/knowhub/anchors/1`` (trio thread).

``AnchorNotices.validate`` is the topic's gossipsub validator (a malformed notice is an
offence of the forwarder); ``read`` hands each valid notice of another node to the node as a
hint (``RecordSink.anchor_announced``: the node reads the chain itself, never the notice).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from node.errors import KnowhubError
from node.ports import RecordSink
from p2p.bridge import TrioThread
from p2p.wire import InvalidEnvelope, decode_anchor_notice

log = logging.getLogger(__name__)


class AnchorNotices:
    def __init__(
        self,
        bridge: TrioThread,
        refuses: Callable[[ID], bool],
        offence: Callable[[ID, str], None],
    ) -> None:
        self._bridge = bridge
        self._refuses = refuses
        self._offence = offence
        #: Notices that passed validation, and notices of other nodes handed to the node.
        self.accepted = 0
        self.received = 0

    def validate(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        if self._refuses(forwarder):
            return False
        try:
            decode_anchor_notice(msg.data)
        except InvalidEnvelope as exc:
            self._offence(forwarder, exc.message)
            return False
        self.accepted += 1
        return True

    async def read(self, subscription: Any, own: bytes, sink: RecordSink) -> None:
        while True:
            msg = await subscription.get()
            if msg.from_id == own:
                continue
            try:
                notice = decode_anchor_notice(msg.data)
            except InvalidEnvelope:
                continue
            self.received += 1
            registry = "0x" + notice.registry.hex()
            try:
                await self._bridge.to_asyncio(sink.anchor_announced(notice.chain_id, registry))
            except KnowhubError:
                log.debug("anchor notice not handled", exc_info=True)
