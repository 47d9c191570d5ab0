"""Which collections this node holds: the one rule every write path asks.

A node holds every collection (``*``, the default: the behaviour before collections) or a
named few (``KNOWHUB_COLLECTIONS``, parsed here). A fact of a collection the node does not
hold is refused on the REST write path (``CollectionNotHeld``: 409, nothing stored) and
dropped, before embedding and without penalty, when it arrives by gossip, sync or CAR import
(``node.ingest`` counts those). A query names collections or, by default, gets the ones held.

Sets. Peers replicate per collection (docs/protocol.md, sections 3 and 4): every signed record
belongs to one **set**, named by ``set_of``: a fact to its collection's, every record of
another kind (tombstones, attestations) to ``RECORDS_SET``, which every node holds. Gossip
topics group sets (``topic_set``): the facts of the default collection and the other records
share the **base topic** (the one topic before collections), every other collection has its
own, and ``outside_set`` is the rule a topic enforces.

Invariant: ``Collections`` is immutable; its names are valid collection names
(``node.facts.check_collection``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from node.errors import ConfigError, InvalidFact
from node.facts import DEFAULT_COLLECTION, Fact, check_collection
from node.records import SignedRecord

ALL = "*"
#: The set of every record of another kind than fact: held by every node. Not a collection
#: name (those start with a letter or digit), so no collection can take it.
RECORDS_SET = "_records"
#: The set whose topic is the base topic (and carries ``RECORDS_SET`` too).
BASE_SET = DEFAULT_COLLECTION


def set_of(record: SignedRecord) -> str:
    """The set a record replicates in: its collection for a fact, ``RECORDS_SET`` otherwise."""
    body = record.body
    return body.collection if isinstance(body, Fact) else RECORDS_SET


def topic_set(set_name: str) -> str:
    """The set naming the gossip topic that carries ``set_name``: ``BASE_SET`` for the default
    collection and ``RECORDS_SET``, the collection itself otherwise."""
    return BASE_SET if set_name == RECORDS_SET else set_name


def check_set_name(value: object) -> str:
    """A set's name: ``RECORDS_SET`` or a collection name (``InvalidFact`` otherwise)."""
    return RECORDS_SET if value == RECORDS_SET else check_collection(value, "set")


def outside_set(records: Sequence[SignedRecord], topic: str) -> str | None:
    """Why ``records`` may not travel on the gossip topic of set ``topic`` (a ``topic_set``
    name), or None. A collection's topic carries facts of that collection only; the base
    topic carries anything (a node from before collections publishes every fact there)."""
    if topic == BASE_SET:
        return None
    for record in records:
        if set_of(record) != topic:
            return f"{record.cid} is not a fact of collection {topic!r}, the topic's"
    return None


@dataclass(frozen=True, slots=True)
class Collections:
    """The collections a node holds: ``names`` None for all of them."""

    names: frozenset[str] | None = None

    @classmethod
    def of(cls, names: Iterable[str] | None) -> Collections:
        """Held collections from names (checked), None for all."""
        if names is None:
            return cls()
        checked = frozenset(check_collection(n) for n in names)
        if not checked:
            raise InvalidFact("a node holds at least one collection", field="collections")
        return cls(checked)

    @classmethod
    def parse(cls, setting: str) -> Collections:
        """``KNOWHUB_COLLECTIONS``: ``*`` or comma-separated names (spaces around names
        ignored). ``KnowhubError`` naming the bad name otherwise."""
        text = setting.strip()
        if text == ALL:
            return cls()
        names = [n.strip() for n in text.split(",")]
        for name in names:
            try:
                check_collection(name)
            except InvalidFact as exc:
                raise ConfigError(
                    f"KNOWHUB_COLLECTIONS: {name!r} is not a collection name ({exc.message}); "
                    "give '*' or comma-separated names"
                ) from exc
        return cls.of(names)

    @property
    def all(self) -> bool:
        return self.names is None

    def holds(self, name: str) -> bool:
        return self.names is None or name in self.names

    def holds_set(self, name: str) -> bool:
        """Whether this node replicates set ``name`` (``RECORDS_SET`` always)."""
        return name == RECORDS_SET or self.holds(name)

    def describe(self) -> str:
        """For messages: ``all collections`` or the names, sorted."""
        return "all collections" if self.names is None else ", ".join(sorted(self.names))

    def held(self) -> str | list[str]:
        """For ``/v1/status``: ``"*"`` or the sorted names."""
        return ALL if self.names is None else sorted(self.names)
