"""p2p.catchup: which peers the node asks for a catch-up sync when they connect (trusted peers
at once, others only once they have stayed ``CONNECT_SYNC_DELAY``: a throwaway connection costs
no sync), and every connected peer each interval; and p2p.connections: a peer is gone only when
its last connection closes. Driven with trio's MockClock: no wall-clock waits."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2p import catchup as catchup_module
from p2p.catchup import CONNECT_SYNC_DELAY, CatchUp
from p2p.peers import PeerBook, PeerPolicy


def peer() -> ID:
    return ID.from_pubkey(create_new_key_pair().public_key)


class FakeHost:
    def __init__(self) -> None:
        self.connected: list[ID] = []

    def get_connected_peers(self) -> list[ID]:
        return list(self.connected)


def test_trusted_peers_are_synced_at_once_others_once_they_stayed_and_all_each_round(
    monkeypatch: Any,
) -> None:
    asked: list[ID] = []

    async def sync_with(host: Any, who: ID, sink: Any, deliver: Any) -> int:
        asked.append(who)
        return 0

    monkeypatch.setattr(catchup_module, "sync_with", sync_with)
    book = PeerBook(PeerPolicy())

    async def deliver(facts: Any, peer: str) -> int:
        return 0

    catchup = CatchUp(book, interval=600, deliver=deliver)
    host = FakeHost()
    trusted, stays, leaves = peer(), peer(), peer()
    book.protect(str(trusted))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(catchup.run, host, None)
            await trio.sleep(0.01)
            host.connected += [trusted, stays, leaves]
            for p in (trusted, stays, leaves):
                catchup.connected(p)
            await trio.sleep(CONNECT_SYNC_DELAY / 4)
            assert asked == [trusted]  # at once
            host.connected.remove(leaves)  # gone before the delay: never asked
            await trio.sleep(CONNECT_SYNC_DELAY * 2)
            assert asked == [trusted, stays]
            await trio.sleep(600)  # a round: every connected peer
            assert sorted(map(str, asked[2:])) == sorted(map(str, (trusted, stays)))
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert leaves not in asked and catchup.syncs == 4 and catchup.last_error is None


def test_a_peer_is_gone_only_when_its_last_connection_closes() -> None:
    from types import SimpleNamespace

    from p2p.connections import Notifee

    gone: list[ID] = []
    also: list[ID] = []
    a = peer()
    conns = {a: ["c1", "c2"]}
    network: Any = SimpleNamespace(get_connections=lambda p: conns.get(p, []))
    notifee = Notifee(lambda *_: None, gone.append, also.append)
    conn: Any = SimpleNamespace(muxed_conn=SimpleNamespace(peer_id=a))

    async def main() -> None:
        conns[a].pop()  # the swarm forgets a connection before it notifies
        await notifee.disconnected(network, conn)
        assert gone == []  # one connection left: still connected
        conns[a].pop()
        await notifee.disconnected(network, conn)

    trio.run(main)
    assert gone == also == [a]
