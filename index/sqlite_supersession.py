"""Supersession in the SQLite catalog: which facts a newer version by the same contributor
replaces.

``facts.supersedes`` holds what a version-2 record names; ``superseded`` holds the facts that
are replaced: ``(fact_id, by)`` where ``by`` is the CID of a stored fact of the *same
contributor* whose ``supersedes`` is that fact. Links are made whichever of the two arrives
first (``link`` runs for every inserted fact, in the insert's transaction) and undone when the
newer fact is erased (a revoked correction gives the earlier fact back its place). A claim to
supersede someone else's fact links nothing.

Invariant: ``superseded`` holds exactly the facts with a stored same-contributor successor.

Every query leaves the superseded facts out, so it asks for their ids; reading the whole table
each time made a query's cost grow with every correction ever stored (a contributor could
slow every query of the node by superseding facts). ``superseded_version`` counts the table's
changes (triggers, in the changing transaction), and ``superseded_ids`` reads the table again
only when the count moved, else answers the array it read last (read-only, shared).
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager

import numpy as np

from node.facts import Fact
from node.ports import Ids

SUPERSESSION_SCHEMA = """
CREATE TABLE IF NOT EXISTS superseded (
    fact_id INTEGER PRIMARY KEY REFERENCES facts(id),
    by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS superseded_by ON superseded(by);
CREATE TABLE IF NOT EXISTS superseded_version (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    n INTEGER NOT NULL
);
INSERT OR IGNORE INTO superseded_version VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS superseded_inserted AFTER INSERT ON superseded
BEGIN UPDATE superseded_version SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS superseded_deleted AFTER DELETE ON superseded
BEGIN UPDATE superseded_version SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS superseded_updated AFTER UPDATE ON superseded
BEGIN UPDATE superseded_version SET n = n + 1; END;
"""


#: A stored fact of the same contributor that names the new fact. ``INDEXED BY``: without
#: statistics SQLite picks ``facts_contributor`` and walks every fact of that contributor,
#: once per inserted fact (a bulk load by one key slowed from 300 to 80 facts/s over 10,000);
#: ``supersedes`` is NULL for almost every row, so its index finds the few that match at once.
REPLACED_BY_SQL = (
    "INSERT OR REPLACE INTO superseded (fact_id, by) SELECT ?, cid FROM facts "
    "INDEXED BY facts_supersedes WHERE supersedes = ? AND contributor = ? "
    "ORDER BY id DESC LIMIT 1"
)


def add_supersedes_column(db: sqlite3.Connection) -> None:
    """Catalogs written before supersession gain ``facts.supersedes`` (all NULL: version 1)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(facts)")}
    if "supersedes" not in columns:
        db.execute("ALTER TABLE facts ADD COLUMN supersedes TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS facts_supersedes ON facts(supersedes)")


def link(cur: sqlite3.Cursor, fact_id: int, fact: Fact) -> None:
    """In the insert's transaction: the fact replaces the one it names (same contributor), and
    is replaced by any stored fact of its contributor that names it."""
    if fact.contributor is None:
        return
    if fact.supersedes is not None:
        cur.execute(
            "INSERT OR REPLACE INTO superseded (fact_id, by) SELECT id, ? FROM facts "
            "WHERE cid = ? AND contributor = ?",
            (fact.cid, fact.supersedes, fact.contributor),
        )
    cur.execute(REPLACED_BY_SQL, (fact_id, fact.cid, fact.contributor))


def unlink(cur: sqlite3.Cursor, fact_id: int, cid: str) -> None:
    """In the erasure's transaction: the fact neither replaces nor is replaced any more."""
    cur.execute("DELETE FROM superseded WHERE fact_id = ? OR by = ?", (fact_id, cid))


class SupersessionTables:
    """Mixed into ``SqliteCatalog``; uses its cursor."""

    def _cursor(self, write: bool = False) -> AbstractContextManager[sqlite3.Cursor]:
        raise NotImplementedError

    #: (version, ids) of the last read; replaced whole, so threads never see half of one.
    _superseded: tuple[int, Ids] | None = None

    def superseded_ids(self) -> Ids:
        with self._cursor() as cur:
            # the version first: rows committed after it only make the cache look stale
            (version,) = cur.execute("SELECT n FROM superseded_version").fetchone()
            cached = self._superseded
            if cached is not None and cached[0] == version:
                return cached[1]
            rows = cur.execute("SELECT fact_id FROM superseded ORDER BY fact_id")
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64)
        ids.flags.writeable = False  # shared by every query until the table changes
        self._superseded = (int(version), ids)
        return ids
