"""Where a record reached this node from, and what that decides.

Every write path names its origin once (``KnowledgeNode.contribute_many(..., origin=...)``)
instead of passing flags; the rules below are the only place that turns an origin into
behaviour:

- **announced**: the node gossips the record to its peers. Records it got from peers (gossip,
  sync) or rebuilt from the chain are not re-announced: their origin announced them, and
  gossipsub forwards what it validated.
- **anchored here**: the node queues the record for its own anchor batches. Records contributed
  here are always anchored here; records from elsewhere are anchored by their origin (the
  chain follower adopts that anchor) unless the operator asks to anchor peers' records too
  (``KNOWHUB_ANCHOR_PEER_FACTS``).
"""

from __future__ import annotations

from enum import StrEnum


class Origin(StrEnum):
    LOCAL = "local"  # REST, MCP or CLI: contributed at this node
    CAR = "car"  # a snapshot the operator imported
    RECOVERY = "recovery"  # blocks found in this node's store without a catalog row
    GOSSIP = "gossip"  # a peer's gossip message
    SYNC = "sync"  # a catch-up reconciliation with a peer
    CHAIN = "chain"  # the chain follower, from another node's anchored manifest

    @property
    def announced(self) -> bool:
        return self in _ANNOUNCED

    def anchored_here(self, anchor_peer_records: bool) -> bool:
        return self in _CONTRIBUTED_HERE or anchor_peer_records


_ANNOUNCED = frozenset({Origin.LOCAL, Origin.CAR, Origin.RECOVERY})
_CONTRIBUTED_HERE = frozenset({Origin.LOCAL, Origin.RECOVERY})
