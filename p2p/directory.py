"""The peer directory: who holds which collections, with which model (docs/protocol.md 3.4).

Each node publishes an **advert** on ``DIRECTORY_TOPIC``, a canonical DAG-CBOR map::

    {"v": 1, "model": <model CID string>, "all": <bool>,
     "collections": {<name>: {"facts": <int>, "digest": <16 bytes>}, ...}}

``model`` is the node's embedding model CID (``node.model_identity``), ``all`` whether it holds
every collection (``*``), ``collections`` the replication sets it holds records of (at most
``MAX_COLLECTIONS``, the largest when it holds more; records of other kinds are not
listed: every node holds them), each with its fact count and ``p2p.reconcile`` digest. The advert
names no peer: its author is the gossip message's signer (strict signing). Pure functions:
``encode_advert``/``decode_advert`` (``InvalidEnvelope`` with the reason for anything but a
valid, canonical advert of at most ``MAX_ADVERT_BYTES``).

``Directory`` is the table of the adverts heard: one entry per peer (its latest advert, by
gossip sequence number: an older one replayed is ignored), at most ``MAX_PEERS`` (a new peer
beyond that replaces the stalest entry), an entry expiring ``EXPIRY_INTERVALS`` advert intervals
after it was heard, and a full table forgets an unconnected peer first. Thread-safe (one
lock): the host files adverts from its trio thread, the node reads ``entries`` (a fresh list)
from its own.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

import dag_cbor
from multiformats import CID

from node.errors import InvalidFact
from node.facts import check_collection
from node.ports import CollectionAdvert, DirectoryEntry
from p2p.reconcile import FP_BYTES
from p2p.wire import MAX_WIRE_CID_CHARS, InvalidEnvelope, is_int

DIRECTORY_TOPIC = "/knowhub/directory/1"
ADVERT_VERSION = 1
MAX_ADVERT_BYTES = 16 * 1024
MAX_COLLECTIONS = 64
MAX_PEERS = 1024
#: An entry not refreshed within this many advert intervals is dropped.
EXPIRY_INTERVALS = 3
_KEYS = frozenset({"v", "model", "all", "collections"})
_SET_KEYS = frozenset({"facts", "digest"})


@dataclass(frozen=True, slots=True)
class Advert:
    model_cid: str
    holds_all: bool
    collections: Mapping[str, CollectionAdvert]


def make_advert(model_cid: str, holds_all: bool, sets: Mapping[str, CollectionAdvert]) -> Advert:
    """This node's advert: its non-empty sets, the ``MAX_COLLECTIONS`` largest if more."""
    ranked = sorted((s for s in sets.items() if s[1].facts > 0), key=lambda s: (-s[1].facts, s[0]))
    return Advert(model_cid, holds_all, dict(sorted(ranked[:MAX_COLLECTIONS])))


def encode_advert(advert: Advert) -> bytes:
    return dag_cbor.encode(
        {
            "v": ADVERT_VERSION,
            "model": advert.model_cid,
            "all": advert.holds_all,
            "collections": {
                name: {"facts": c.facts, "digest": bytes.fromhex(c.digest)}
                for name, c in advert.collections.items()
            },
        }
    )


def decode_advert(data: bytes) -> Advert:
    """A peer's advert, checked completely; ``InvalidEnvelope`` on the first problem."""
    if len(data) > MAX_ADVERT_BYTES:
        raise InvalidEnvelope(f"advert is {len(data)} bytes, over {MAX_ADVERT_BYTES}")
    try:
        obj: Any = dag_cbor.decode(data)
    except Exception as exc:  # dag_cbor raises several unrelated types for bad input
        raise InvalidEnvelope(f"advert is not DAG-CBOR: {exc}") from exc
    if not isinstance(obj, dict) or set(obj) != _KEYS:
        raise InvalidEnvelope(f"advert must be a map with exactly {sorted(_KEYS)}")
    if not is_int(obj["v"]) or obj["v"] != ADVERT_VERSION:
        raise InvalidEnvelope(f"unsupported advert version {obj['v']!r} (the integer 1)")
    model = _model(obj["model"])
    if not isinstance(obj["all"], bool):
        raise InvalidEnvelope("all must be a boolean")
    sets = obj["collections"]
    if not isinstance(sets, dict) or len(sets) > MAX_COLLECTIONS:
        raise InvalidEnvelope(f"collections must be a map of at most {MAX_COLLECTIONS}")
    collections = {_name(name): _set(value) for name, value in sets.items()}
    if dag_cbor.encode(obj) != data:
        raise InvalidEnvelope("advert is not canonical DAG-CBOR")
    return Advert(model, obj["all"], collections)


def _model(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_WIRE_CID_CHARS:
        raise InvalidEnvelope(f"model must be a CID string of at most {MAX_WIRE_CID_CHARS} chars")
    try:
        cid = CID.decode(value)
    except Exception as exc:  # multiformats raises several types for bad input
        raise InvalidEnvelope(f"model is not a CID: {exc}") from exc
    if cid.version != 1 or str(cid) != value:
        raise InvalidEnvelope("model must be a CIDv1 in its base32 string form")
    return value


def _name(value: Any) -> str:
    try:
        return check_collection(value)
    except InvalidFact as exc:
        raise InvalidEnvelope(f"collection name {value!r}: {exc.message}") from exc


def _set(value: Any) -> CollectionAdvert:
    if not isinstance(value, dict) or set(value) != _SET_KEYS:
        raise InvalidEnvelope(f"a collection must be a map with exactly {sorted(_SET_KEYS)}")
    facts, digest = value["facts"], value["digest"]
    if not is_int(facts) or not 0 <= facts < 2**63:
        raise InvalidEnvelope("facts must be a non-negative integer")
    if not isinstance(digest, bytes) or len(digest) != FP_BYTES:
        raise InvalidEnvelope(f"digest must be {FP_BYTES} bytes")
    return CollectionAdvert(facts=facts, digest=digest.hex())


@dataclass(slots=True)
class _Heard:
    advert: Advert
    seqno: int
    at: float


class Directory:
    """Thread-safe: the trio thread files adverts, the node's threads read entries."""

    def __init__(self, interval: float, max_peers: int = MAX_PEERS) -> None:
        self._ttl = interval * EXPIRY_INTERVALS
        self._max_peers = max_peers
        self._entries: dict[str, _Heard] = {}
        self._lock = threading.Lock()

    def heard(
        self, peer: str, advert: Advert, seqno: int, now: float, connected: Set[str] = frozenset()
    ) -> bool:
        """Record ``peer``'s advert (its gossip sequence number ``seqno``, heard at ``now``):
        False when an advert of the same or a later sequence number is already held. A full
        table makes room by forgetting the stalest entry of a peer not in ``connected`` (a
        flood of adverts from new keys cannot push out the peers this node talks to); when
        every entry is of a connected peer, the new one is not filed."""
        with self._lock:
            self._expire(now)
            known = self._entries.get(peer)
            if known is not None and known.seqno >= seqno:
                return False
            if known is None and len(self._entries) >= self._max_peers:
                apart = [p for p in self._entries if p not in connected]
                if not apart:
                    return False
                del self._entries[min(apart, key=lambda p: self._entries[p].at)]
            self._entries[peer] = _Heard(advert, seqno, now)
            return True

    def expire(self, now: float) -> None:
        with self._lock:
            self._expire(now)

    def _expire(self, now: float) -> None:
        for peer in [p for p, h in self._entries.items() if now - h.at > self._ttl]:
            del self._entries[peer]

    def collections(self, connected: Set[str] | None = None) -> set[str]:
        """Every collection some peer advertises (only peers in ``connected``, if given)."""
        with self._lock:
            return {
                name
                for peer, h in self._entries.items()
                if connected is None or peer in connected
                for name in h.advert.collections
            }

    def entries(self, now: float, connected: set[str]) -> list[DirectoryEntry]:
        """The live entries, freshest first."""
        with self._lock:
            self._expire(now)
            heard = sorted(self._entries.items(), key=lambda e: -e[1].at)
        return [
            DirectoryEntry(
                peer_id=peer,
                model_cid=h.advert.model_cid,
                holds_all=h.advert.holds_all,
                collections=dict(h.advert.collections),
                seen_at=h.at,
                connected=peer in connected,
            )
            for peer, h in heard
        ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
