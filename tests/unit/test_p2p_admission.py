"""p2p.admission on real in-process py-libp2p hosts: the dial gate, and inbound slots that come
back when a connection closes (the churn test in tests/integration/test_p2p_abuse.py does the
same at scale against a node process)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
import trio
from libp2p.network.exceptions import SwarmException
from libp2p.network.swarm import Swarm
from libp2p.peer.peerinfo import PeerInfo

from p2p.admission import Admission, ConnectionLimits, install
from tests.p2p_attacks import bare_host


async def until(check: Callable[[], bool]) -> None:
    """Poll ``check`` (a condition on the swarm's state, which sets no event) for up to 30 s."""
    with trio.fail_after(30):
        while not check():  # noqa: ASYNC110
            await trio.sleep(0.01)


def info(host: Any) -> PeerInfo:
    return PeerInfo(host.get_id(), host.get_addrs())


def test_only_peers_the_gate_allows_are_dialled_and_outcomes_are_reported() -> None:
    async def main() -> None:
        allowed: set[str] = set()
        outcomes: list[tuple[str, bool]] = []
        async with bare_host() as a, bare_host() as b:
            install(
                cast(Swarm, a.get_network()),
                Admission(ConnectionLimits()),
                lambda peer: peer in allowed,
                lambda peer, ok: outcomes.append((peer, ok)),
            )
            with pytest.raises(SwarmException, match="not dialling"):
                await a.connect(info(b))
            assert b.get_id() not in a.get_connected_peers() and outcomes == []
            allowed.add(str(b.get_id()))
            with trio.fail_after(30):
                await a.connect(info(b))
            assert b.get_id() in a.get_connected_peers()
            assert outcomes == [(str(b.get_id()), True)]
            # connected: a stream needs no dial, so the gate is not asked
            allowed.clear()
            with trio.fail_after(30):
                stream = await a.get_network().new_stream(b.get_id())
            await stream.reset()
            await a.disconnect(b.get_id())  # py-libp2p leaves sockets open otherwise

    trio.run(main)


def test_inbound_slots_and_per_address_counts_come_back_when_peers_leave() -> None:
    async def main() -> None:
        admission = Admission(ConnectionLimits(max_connections=3, max_per_ip=2))
        async with bare_host() as server:
            swarm = cast(Swarm, server.get_network())
            install(swarm, admission, lambda _: True, lambda *_: None)
            limiter = swarm._inbound_limiter
            for _ in range(6):  # three times the total cap, one after another
                async with bare_host() as client:
                    with trio.fail_after(30):
                        await client.connect(info(server))
                    await until(lambda: admission.per_ip("127.0.0.1") == 1)
                    await client.disconnect(server.get_id())
                # py-libp2p's own limiter token comes back too
                await until(lambda: not admission.open and not limiter.borrowed_tokens)
            assert admission.refused == 0

    trio.run(main)


def test_gossip_streams_of_refused_peers_are_reset_unread() -> None:
    from types import SimpleNamespace

    from p2p.admission import gate_pubsub_streams

    read: list[str] = []
    reset: list[str] = []

    class Pubsub:
        async def continuously_read_stream(self, stream: Any) -> None:
            read.append(stream.muxed_conn.peer_id)

    def stream(peer: str) -> Any:
        async def do_reset() -> None:
            reset.append(peer)

        return SimpleNamespace(muxed_conn=SimpleNamespace(peer_id=peer), reset=do_reset)

    pubsub = Pubsub()
    gate_pubsub_streams(cast(Any, pubsub), lambda peer: cast(str, peer).startswith("bad"))

    async def main() -> None:
        for peer in ("good-1", "bad-1", "good-2", "bad-2"):
            await pubsub.continuously_read_stream(stream(peer))

    trio.run(main)
    assert read == ["good-1", "good-2"] and reset == ["bad-1", "bad-2"]
