"""Schemas of ``/v1/peers``: peers as this node sees them, and the peer directory (what peers
advertise they hold). Separate from the domain types they are read from (``node.ports``
``PeerStatus``, ``DirectoryEntry``); re-exported by ``api.schemas``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PeerOut(BaseModel):
    peer_id: str
    addresses: list[str]
    connected_since: float | None = Field(description="Unix time; None when not connected.")
    facts_received: int
    rejected_messages: int = Field(
        description="Offences ever (rejected messages, refused "
        "sync requests, streams whose bytes raised)."
    )
    recent_offences: int = Field(description="Offences within the offence window.")
    banned: bool
    trusted: bool = Field(
        description="Bootstrap, operator-connected or recently useful: redialled, never trimmed."
    )
    score: float | None = Field(description="Gossipsub peer score as this node sees it.")


class PeerConnectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(
        description="Multiaddr with /p2p/, e.g. /ip4/10.0.0.2/tcp/4001/p2p/12D3KooW...",
        max_length=1024,
    )


class PeerConnected(BaseModel):
    peer_id: str


class CollectionAdvertOut(BaseModel):
    facts: int = Field(description="Signed facts the peer holds in the collection.")
    digest: str = Field(description="Digest of that set (docs/protocol.md 4.1): equal sets, equal.")


class DirectoryEntryOut(BaseModel):
    peer_id: str
    model_cid: str = Field(description="The peer's embedding model (docs/protocol.md 6a).")
    holds_all: bool = Field(description="The peer holds every collection (KNOWHUB_COLLECTIONS=*).")
    collections: dict[str, CollectionAdvertOut] = Field(
        description="Collections the peer holds records of (at most 64, the largest)."
    )
    seen_at: float = Field(description="Unix time this node last heard the peer's advert.")
    connected: bool


class PeersOut(BaseModel):
    peers: list[PeerOut]
    directory: list[DirectoryEntryOut] = Field(
        default_factory=list,
        description="What peers advertise they hold (docs/protocol.md 3.4), freshest first.",
    )
