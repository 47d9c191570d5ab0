"""Operator moderation in the SQLite catalog: facts this node hides (``hidden``).

A hidden fact keeps its catalog row (so the operator can unhide it, and so peers' copies are
recognised and not fetched again) but leaves everything that serves it: its keyword-index
entry is deleted (and restored on unhide), ``ids`` (what the vector index is reconciled with)
leaves it out, and ``signed_records`` (what sync answers) does not hand it to peers.
Nothing is signed or sent: hiding is this node's decision alone.

Invariant: a fact is hidden iff it has a ``hidden`` row; the keyword index holds exactly the
facts that are not hidden.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import AbstractContextManager

from node.ports import HiddenFact

MODERATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS hidden (
    fact_id INTEGER PRIMARY KEY REFERENCES facts(id),
    reason TEXT,
    hidden_at REAL NOT NULL
);
"""


class ModerationTables:
    """Mixed into ``SqliteCatalog``; uses its transactional cursor."""

    def _cursor(self, write: bool = False) -> AbstractContextManager[sqlite3.Cursor]:
        raise NotImplementedError

    def hide(self, cid: str, reason: str | None) -> int | None:
        with self._cursor(write=True) as cur:
            row = cur.execute("SELECT id, text FROM facts WHERE cid = ?", (cid,)).fetchone()
            if row is None:
                return None
            fact_id, text = int(row[0]), str(row[1])
            cur.execute(
                "INSERT OR IGNORE INTO hidden (fact_id, reason, hidden_at) VALUES (?, ?, ?)",
                (fact_id, reason, time.time()),
            )
            if cur.rowcount == 0:
                return None  # hidden already
            cur.execute(
                "INSERT INTO facts_fts (facts_fts, rowid, text) VALUES ('delete', ?, ?)",
                (fact_id, text),
            )
        return fact_id

    def unhide(self, cid: str) -> int | None:
        with self._cursor(write=True) as cur:
            row = cur.execute(
                "SELECT f.id, f.text FROM facts f JOIN hidden h ON h.fact_id = f.id "
                "WHERE f.cid = ?",
                (cid,),
            ).fetchone()
            if row is None:
                return None
            fact_id, text = int(row[0]), str(row[1])
            cur.execute("DELETE FROM hidden WHERE fact_id = ?", (fact_id,))
            cur.execute("INSERT INTO facts_fts (rowid, text) VALUES (?, ?)", (fact_id, text))
        return fact_id

    def hidden_facts(self, limit: int) -> list[HiddenFact]:
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT f.cid, h.reason, h.hidden_at FROM hidden h JOIN facts f "
                "ON f.id = h.fact_id ORDER BY h.hidden_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [HiddenFact(str(c), None if r is None else str(r), float(t)) for c, r, t in rows]

    def is_hidden(self, cid: str) -> bool:
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT 1 FROM hidden h JOIN facts f ON f.id = h.fact_id WHERE f.cid = ?", (cid,)
            ).fetchone()
        return row is not None

    def hidden_count(self) -> int:
        with self._cursor() as cur:
            return int(cur.execute("SELECT count(*) FROM hidden").fetchone()[0])
