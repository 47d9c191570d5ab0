"""Connections of the libp2p host: a notifee that reports connects and disconnects, and the
resolution of /dns, /dns4 and /dns6 bootstrap addresses with the system resolver."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import multiaddr
import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from multiformats import multihash

from node.errors import InvalidInput

log = logging.getLogger(__name__)


class Notifee(INotifee):
    """Calls ``on_connect`` with the peer and remote IP of each connection, and each of
    ``on_gone`` with the peer once it has no connection left (a peer with two connections that
    loses one is still connected)."""

    def __init__(
        self, on_connect: Callable[[ID, str | None], None], *on_gone: Callable[[ID], None]
    ) -> None:
        self._on_connect = on_connect
        self._on_gone = on_gone

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._on_connect(conn.muxed_conn.peer_id, remote_ip(conn))

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if not network.get_connections(peer):
            for gone in self._on_gone:
                gone(peer)

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass


def remote_ip(conn: INetConn) -> str | None:
    """The IP address a connection comes from (None when the transport does not say)."""
    try:
        addresses = conn.get_transport_addresses()
    except Exception:  # transports differ in what they offer
        return None
    for address in addresses:
        parts = str(address).split("/")
        if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
            return parts[2]
    return None


_DNS = {"dns": socket.AF_UNSPEC, "dns4": socket.AF_INET, "dns6": socket.AF_INET6}


async def resolved(info: PeerInfo) -> PeerInfo:
    """``info`` with /dns, /dns4 and /dns6 addresses replaced by the IP addresses they name.

    py-libp2p 0.8.1's own resolution (dnspython's async resolver) fails to dial names such as
    ``localhost`` or compose service names, so the host resolves with the system resolver."""
    addresses: list[multiaddr.Multiaddr] = []
    for address in info.addrs:
        parts = str(address).split("/")
        if len(parts) < 3 or parts[1] not in _DNS:
            addresses.append(address)
            continue
        try:
            found = await trio.to_thread.run_sync(
                socket.getaddrinfo, parts[2], None, _DNS[parts[1]], socket.SOCK_STREAM
            )
        except OSError as exc:
            log.info("cannot resolve %s: %s", parts[2], exc)
            continue
        rest = "/".join(parts[3:])
        for family, *_, sockaddr in found:
            kind = "ip6" if family == socket.AF_INET6 else "ip4"
            addresses.append(multiaddr.Multiaddr(f"/{kind}/{sockaddr[0]}/{rest}"))
    return PeerInfo(info.peer_id, list(dict.fromkeys(addresses)) or info.addrs)


def parse_peer_address(address: str) -> PeerInfo:
    """A multiaddr with ``/p2p/<peer id>``; ``InvalidInput`` otherwise (the multiaddr and peer
    id parsers raise many unrelated types on hostile text: every one means "not an address")."""
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(address))
    except Exception as exc:
        raise InvalidInput(f"not a multiaddr with /p2p/: {address}", field="address") from exc


def parse_peer_id(peer_id: str) -> ID:
    """A base58 peer id that is a multihash; ``InvalidInput`` otherwise."""
    try:
        peer = ID.from_base58(peer_id)
        multihash.unwrap(peer.to_bytes())  # a peer id is a multihash of a public key
    except Exception as exc:  # base58 and multihash errors vary
        raise InvalidInput(f"not a peer id: {peer_id}", field="peer_id") from exc
    return peer


def peer_of_address(address: str) -> str | None:
    """The peer id in a multiaddr with /p2p/, or None (the redialler logs bad addresses)."""
    try:
        return str(parse_peer_address(address).peer_id)
    except InvalidInput:
        return None
