"""Near-duplicates in the SQLite catalog: facts that repeat a stored fact are kept, linked to
it, and left out of search.

``text_keys`` holds each fact's ``node.facts.text_key`` (same words after normalisation);
``duplicates`` holds ``(fact_id, of_id)``: the fact repeats ``of_id``, the oldest stored fact
it repeats, which is never itself a duplicate. A new fact is linked (``link_duplicate``, in the
insert's transaction) when a stored fact has its text key, or when the write path found a
stored fact of the same contributor whose embedding is nearly the same (the ``duplicate_of``
hint of ``NewFact``, ``node.ingest``). A duplicate stays in the catalog, the content store,
the sync set and anchoring (it is a valid signed record, and peers converge on the same set),
but not in the search indexes: ``SqliteCatalog.ids`` leaves it out, so flooding one claim in
many spellings gives one search result. When the fact it repeats is erased, the oldest
duplicate takes its place (searchable again after the next start's reconcile).

Invariant: ``duplicates.of_id`` names a fact that is in the catalog and is not a duplicate.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager

from index.sqlite_anchors import chunks
from node.facts import Fact, text_key

log = logging.getLogger(__name__)

DUPLICATES_SCHEMA = """
CREATE TABLE IF NOT EXISTS text_keys (fact_id INTEGER PRIMARY KEY, key TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS text_keys_key ON text_keys(key);
CREATE TABLE IF NOT EXISTS duplicates (
    fact_id INTEGER PRIMARY KEY,
    of_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS duplicates_of ON duplicates(of_id);
"""
#: The SQL condition "this facts.id is searchable" shares with moderation's hidden facts.
NOT_DUPLICATE = "id NOT IN (SELECT fact_id FROM duplicates)"


def seed_text_keys(db: sqlite3.Connection) -> None:
    """Catalogs written before near-duplicate links get every fact's text key (no links)."""
    done = db.execute("SELECT value FROM settings WHERE key = 'text_keys_seeded'").fetchone()
    if done is not None:
        return
    rows = db.execute(
        "SELECT id, text FROM facts WHERE id NOT IN (SELECT fact_id FROM text_keys)"
    ).fetchall()
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT OR IGNORE INTO text_keys (fact_id, key) VALUES (?, ?)",
        [(int(i), text_key(str(t))) for i, t in rows],
    )
    db.execute("INSERT OR REPLACE INTO settings VALUES ('text_keys_seeded', '1')")
    db.execute("COMMIT")
    if rows:
        log.info("catalog: text keys computed for %d facts", len(rows))


def link_duplicate(cur: sqlite3.Cursor, fact_id: int, fact: Fact, hint: int | None) -> bool:
    """In the insert's transaction: key the new fact and link it to the fact it repeats
    (same text key, else ``hint``); whether it is a duplicate."""
    key = text_key(fact.text)
    row = cur.execute(
        "SELECT fact_id FROM text_keys WHERE key = ? AND fact_id != ? ORDER BY fact_id LIMIT 1",
        (key, fact_id),
    ).fetchone()
    cur.execute("INSERT OR REPLACE INTO text_keys (fact_id, key) VALUES (?, ?)", (fact_id, key))
    of = int(row[0]) if row is not None else hint
    if of is None or of == fact_id:
        return False
    root = cur.execute("SELECT of_id FROM duplicates WHERE fact_id = ?", (of,)).fetchone()
    of = int(root[0]) if root is not None else of
    if cur.execute("SELECT 1 FROM facts WHERE id = ?", (of,)).fetchone() is None:
        return False
    cur.execute("INSERT OR REPLACE INTO duplicates (fact_id, of_id) VALUES (?, ?)", (fact_id, of))
    return True


def unlink_duplicates(cur: sqlite3.Cursor, fact_id: int) -> None:
    """In the erasure's transaction: the fact leaves both tables; if others repeated it, the
    oldest of them becomes the one the rest repeat."""
    cur.execute("DELETE FROM text_keys WHERE fact_id = ?", (fact_id,))
    cur.execute("DELETE FROM duplicates WHERE fact_id = ?", (fact_id,))
    heir = cur.execute(
        "SELECT fact_id FROM duplicates WHERE of_id = ? ORDER BY fact_id LIMIT 1", (fact_id,)
    ).fetchone()
    if heir is not None:
        cur.execute("DELETE FROM duplicates WHERE fact_id = ?", (heir[0],))
        cur.execute("UPDATE duplicates SET of_id = ? WHERE of_id = ?", (heir[0], fact_id))


class DuplicateTables:
    """Mixed into ``SqliteCatalog``; uses its read cursor."""

    def _cursor(self, write: bool = False) -> AbstractContextManager[sqlite3.Cursor]:
        raise NotImplementedError

    def duplicates_among(self, ids: Sequence[int]) -> set[int]:
        found: set[int] = set()
        with self._cursor() as cur:
            for chunk in chunks(list(ids)):
                marks = ",".join("?" * len(chunk))
                rows = cur.execute(
                    f"SELECT fact_id FROM duplicates WHERE fact_id IN ({marks})", chunk
                )
                found.update(int(r[0]) for r in rows)
        return found

    def duplicate_of(self, cid: str) -> str | None:
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT original.cid FROM facts AS copy JOIN duplicates ON "
                "duplicates.fact_id = copy.id JOIN facts AS original ON "
                "original.id = duplicates.of_id WHERE copy.cid = ?",
                (cid,),
            ).fetchone()
        return None if row is None else str(row[0])

    def duplicate_count(self) -> int:
        with self._cursor() as cur:
            return int(cur.execute("SELECT count(*) FROM duplicates").fetchone()[0])
