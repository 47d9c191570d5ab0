"""Collections in the SQLite catalog: which collection each fact belongs to.

``facts.collection`` holds the record's ``collection`` key (``node.facts``); NULL is the
default collection, whose name a record never spells, so every row stored before collections
existed, and every default fact since, reads as ``"default"``. The column is indexed: a query
restricted to collections finds their ids at once (``node.retrieval`` applies them inside the
rankers, as it does a metadata filter's).

Replication sets (``node.collections``): ``set_clause`` restricts the signed facts to one set
(``default`` is the NULL column; ``RECORDS_SET`` holds no fact, only the other records).

Invariant: ``collection`` is NULL exactly for facts of the default collection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager

import numpy as np

from node.collections import RECORDS_SET
from node.facts import DEFAULT_COLLECTION, Fact
from node.ports import Ids


def add_collection_column(db: sqlite3.Connection) -> None:
    """Catalogs written before collections gain ``facts.collection`` (all NULL: the default
    collection), and its index."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(facts)")}
    if "collection" not in columns:
        db.execute("ALTER TABLE facts ADD COLUMN collection TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS facts_collection ON facts(collection)")


def stored_collection(fact: Fact) -> str | None:
    """The column value of ``fact``: NULL for the default collection."""
    return None if fact.collection == DEFAULT_COLLECTION else fact.collection


def set_clause(set_name: str | None) -> tuple[str, tuple[str, ...]]:
    """The ``AND ...`` restricting ``facts`` rows to set ``set_name`` (None: every set)."""
    if set_name is None:
        return "", ()
    if set_name == RECORDS_SET:
        return " AND 0", ()
    if set_name == DEFAULT_COLLECTION:
        return " AND collection IS NULL", ()
    return " AND collection = ?", (set_name,)


def holds_records(set_name: str | None) -> bool:
    """Whether records of kinds other than fact belong to set ``set_name``."""
    return set_name is None or set_name == RECORDS_SET


class CollectionTables:
    """Mixed into ``SqliteCatalog``; uses its cursor."""

    def _cursor(self, write: bool = False) -> AbstractContextManager[sqlite3.Cursor]:
        raise NotImplementedError

    def collection_ids(self, names: Sequence[str]) -> Ids:
        """The ids of the facts in any of ``names``, ascending."""
        named = sorted({n for n in names if n != DEFAULT_COLLECTION})
        clauses = []
        if DEFAULT_COLLECTION in names:
            clauses.append("collection IS NULL")
        if named:
            clauses.append(f"collection IN ({','.join('?' * len(named))})")
        if not clauses:
            return np.empty(0, dtype=np.int64)
        sql = f"SELECT id FROM facts WHERE {' OR '.join(clauses)} ORDER BY id"
        with self._cursor() as cur:
            rows = cur.execute(sql, named)
            return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def collection_counts(self) -> dict[str, int]:
        """Stored facts per collection (hidden and superseded ones included)."""
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT coalesce(collection, ?), count(*) FROM facts GROUP BY collection",
                (DEFAULT_COLLECTION,),
            ).fetchall()
        return {str(name): int(n) for name, n in rows}
