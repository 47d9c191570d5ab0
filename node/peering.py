"""The operator's view of the peer-to-peer network: peers, the peer directory, dialling and
hanging up. A part of ``KnowledgeNode`` (mixed in); with networking off (``KNOWHUB_P2P_LISTEN=
off``) the lists are empty and the actions raise ``NetworkingOff``.

The directory is what peers advertise they hold (``node.ports.DirectoryEntry``: model,
collections with counts and digests), freshest first; the network adapter keeps it
(``p2p.directory``, ``node.memory_network``)."""

from __future__ import annotations

from node.errors import NetworkingOff
from node.ports import DirectoryEntry, Network, PeerStatus


class Peering:
    _network: Network | None

    def peers(self) -> list[PeerStatus]:
        return [] if self._network is None else self._network.peers()

    def directory(self) -> list[DirectoryEntry]:
        return [] if self._network is None else self._network.directory()

    async def connect_peer(self, address: str) -> str:
        return await self._require_network().connect(address)

    async def disconnect_peer(self, peer_id: str, block_seconds: float) -> None:
        await self._require_network().disconnect(peer_id, block_seconds)

    def _require_network(self) -> Network:
        if self._network is None:
            raise NetworkingOff("networking is off on this node (KNOWHUB_P2P_LISTEN=off)")
        return self._network
