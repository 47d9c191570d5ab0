"""Bootstrap multiaddrs with DNS names are resolved by the host (compose uses /dns4/nodeN)."""

from __future__ import annotations

import multiaddr
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from p2p.connections import resolved

PEER = "12D3KooWC6pyXUhYGHAVaGu3jS3hRFPRbXhnUrWh7fDGsanbdNJu"


def resolve(address: str) -> list[str]:
    info = info_from_p2p_addr(multiaddr.Multiaddr(address))

    async def run() -> list[str]:
        out = await resolved(info)
        assert out.peer_id == ID.from_base58(PEER)
        return [str(a) for a in out.addrs]

    return trio.run(run)


def test_dns4_becomes_ip4() -> None:
    assert resolve(f"/dns4/localhost/tcp/4001/p2p/{PEER}") == ["/ip4/127.0.0.1/tcp/4001"]


def test_ip_addresses_pass_through() -> None:
    assert resolve(f"/ip4/10.1.2.3/tcp/4001/p2p/{PEER}") == ["/ip4/10.1.2.3/tcp/4001"]


def test_unresolvable_name_is_kept_for_the_dialer_to_report() -> None:
    address = f"/dns4/no-such-host.invalid/tcp/4001/p2p/{PEER}"
    assert resolve(address) == ["/dns4/no-such-host.invalid/tcp/4001"]
