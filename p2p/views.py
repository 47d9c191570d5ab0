"""What ``Libp2pNetwork`` reports of its peers: per-peer status (``/v1/peers``) and connected
peers by gossipsub score band (``/v1/status``, ``/metrics``). Read-only views over the host,
the ``PeerBook`` and the gossipsub router; called from the asyncio side, so every read
tolerates state that changes under it (a peer leaving, a session restarting)."""

from __future__ import annotations

from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub

from node.ports import PeerStatus
from p2p.peers import PeerBook
from p2p.scoring import GRAYLIST_THRESHOLD


def gossip_score(gossip: GossipSub | None, peer_id: str, topic: str) -> float | None:
    """The peer's gossipsub score (``p2p.scoring``), None without a running router."""
    if gossip is None or gossip.scorer is None:
        return None
    try:
        return round(gossip.scorer.score(ID.from_base58(peer_id), [topic]), 3)
    except Exception:  # a record of an odd id, or the scorer mid-update: no score to show
        return None


def peer_statuses(
    host: IHost | None, book: PeerBook, gossip: GossipSub | None, topic: str
) -> list[PeerStatus]:
    """Connected peers and those that ever delivered or offended."""
    connected = {str(p) for p in host.get_connected_peers()} if host is not None else set()
    out = []
    for peer_id, peer in book:
        if peer_id not in connected and not peer.facts_received and not peer.rejected:
            continue
        addrs: list[str] = []
        if host is not None:
            try:
                addrs = [str(a) for a in host.get_peerstore().addrs(ID.from_base58(peer_id))]
            except Exception:  # not in the peerstore (any more): no addresses to show
                addrs = []
        out.append(
            PeerStatus(
                peer_id=peer_id,
                addresses=addrs,
                connected_since=peer.connected_since if peer_id in connected else None,
                facts_received=peer.facts_received,
                rejected_messages=peer.rejected,
                recent_offences=book.recent_offences(peer_id),
                banned=book.is_banned(peer_id),
                trusted=book.is_trusted(peer_id),
                score=gossip_score(gossip, peer_id, topic),
            )
        )
    return out


def score_bands(
    host: IHost | None, book: PeerBook, gossip: GossipSub | None, topic: str
) -> dict[str, int]:
    """Connected peers by band: trusted, positive, negative, graylisted."""
    bands = {"trusted": 0, "positive": 0, "negative": 0, "graylisted": 0}
    for peer in host.get_connected_peers() if host is not None else []:
        key = str(peer)
        score = gossip_score(gossip, key, topic)
        if book.is_trusted(key):
            bands["trusted"] += 1
        elif score is None or score >= 0:
            bands["positive"] += 1
        elif score >= GRAYLIST_THRESHOLD:
            bands["negative"] += 1
        else:
            bands["graylisted"] += 1
    return bands
