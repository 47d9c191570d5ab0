"""Which collections this node holds: the one rule every write path asks.

A node holds every collection (``*``, the default: the behaviour before collections) or a
named few (``KNOWHUB_COLLECTIONS``, parsed here). A fact of a collection the node does not
hold is refused on the REST write path (``CollectionNotHeld``: 409, nothing stored) and
dropped, before embedding and without penalty, when it arrives by gossip, sync or CAR import
(``node.ingest`` counts those). A query names collections or, by default, gets the ones held.

Invariant: ``Collections`` is immutable; its names are valid collection names
(``node.facts.check_collection``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from node.errors import ConfigError, InvalidFact
from node.facts import check_collection

ALL = "*"


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

    def describe(self) -> str:
        """For messages: ``all collections`` or the names, sorted."""
        return "all collections" if self.names is None else ", ".join(sorted(self.names))

    def held(self) -> str | list[str]:
        """For ``/v1/status``: ``"*"`` or the sorted names."""
        return ALL if self.names is None else sorted(self.names)
