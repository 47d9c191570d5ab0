"""Which collections this node holds: the one rule every write path asks.

A node holds every collection (``*``, the default: the behaviour before collections) or a
named few (``KNOWHUB_COLLECTIONS``, parsed here). A fact of a collection the node does not
hold is refused on the REST write path (``CollectionNotHeld``: 409, nothing stored) and
dropped, before embedding and without penalty, when it arrives by gossip, sync or CAR import
(``node.ingest`` counts those). A query names collections or, by default, gets the ones held.

Sets. Peers replicate per collection (docs/protocol.md, sections 3 and 4): every signed record
belongs to one **set**, named by ``set_of``: a fact to its collection's, every other record
(tombstones, attestations) to the **base set**, ``default``, with the facts of the default
collection. A node always holds the base set; ``sets_held`` says which others it wants.

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
#: The set of default-collection facts and every record of another kind than fact.
BASE_SET = DEFAULT_COLLECTION


def set_of(record: SignedRecord) -> str:
    """The set a record replicates in: its collection for a fact, the base set otherwise."""
    body = record.body
    return body.collection if isinstance(body, Fact) else BASE_SET


def outside_set(records: Sequence[SignedRecord], set_name: str) -> str | None:
    """Why ``records`` may not travel as set ``set_name`` (gossip on its topic), or None.

    A collection's topic carries facts of that collection only; the base set's topic carries
    anything (a node from before collections publishes every fact there)."""
    if set_name == BASE_SET:
        return None
    for record in records:
        if set_of(record) != set_name:
            return f"{record.cid} is not a fact of collection {set_name!r}, the topic's"
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
        """Whether this node replicates set ``name`` (the base set always)."""
        return name == BASE_SET or self.holds(name)

    def describe(self) -> str:
        """For messages: ``all collections`` or the names, sorted."""
        return "all collections" if self.names is None else ", ".join(sorted(self.names))

    def held(self) -> str | list[str]:
        """For ``/v1/status``: ``"*"`` or the sorted names."""
        return ALL if self.names is None else sorted(self.names)
