"""Erasing a fact from the SQLite catalog: what a revocation leaves behind is nothing.

``erase_fact`` removes, in one transaction, the fact's row (text, metadata, block, vector,
signature), its keyword-index entry, its exploded metadata, and its places in the publication
and anchoring queues and in its anchor batch (the batch and its root stay: other facts are
proven by them, and the root commits only to the CID). The writer connection runs with
``secure_delete``, so freed pages are zeroed, and a WAL checkpoint follows the erasure so the
old page images leave the WAL file too: the text is not left in the database files.

Invariant: a fact is either wholly in the catalog or wholly gone; the caller removes the
returned row id from the vector index under the same write lock.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import AbstractContextManager

import numpy as np

from index.sqlite_duplicates import unlink_duplicates
from index.sqlite_supersession import unlink
from node.ports import Ids

#: Row ids (and CIDs) of erased facts, so that the start-up audit can tell an id the vector index
#: still had from a fact the catalog lost (``node.recovery``). Holds no content.
ERASURE_SCHEMA = """
CREATE TABLE IF NOT EXISTS erased (
    fact_id INTEGER PRIMARY KEY,
    cid TEXT NOT NULL,
    erased_at REAL NOT NULL
);
"""

#: A new fact's row id: past every id the catalog ever gave, erased ones included. SQLite's
#: own choice is max(id) + 1, which hands an erased newest fact's id to the next fact; the
#: search caches (``vectors.faiss``, ``vectors.f32``) are reconciled by id, so after a crash
#: before their next save the new fact would keep the erased one's vector.
NEXT_FACT_ID = (
    "(SELECT coalesce(max(m), 0) + 1 FROM "
    "(SELECT max(id) AS m FROM facts UNION ALL SELECT max(fact_id) FROM erased))"
)


class ErasureTables:
    """Mixed into ``SqliteCatalog``; uses its transactional cursor and writer connection."""

    def _cursor(self, write: bool = False) -> AbstractContextManager[sqlite3.Cursor]:
        raise NotImplementedError

    def _checkpoint(self) -> None:
        raise NotImplementedError

    def erase_fact(self, cid: str) -> int | None:
        with self._cursor(write=True) as cur:
            row = cur.execute("SELECT id, text FROM facts WHERE cid = ?", (cid,)).fetchone()
            if row is None:
                return None
            fact_id, text = int(row[0]), str(row[1])
            hidden = cur.execute("SELECT 1 FROM hidden WHERE fact_id = ?", (fact_id,)).fetchone()
            if hidden is None:  # a hidden fact has no keyword entry (index.sqlite_moderation)
                # external-content FTS5: the 'delete' command needs the indexed text once more
                cur.execute(
                    "INSERT INTO facts_fts (facts_fts, rowid, text) VALUES ('delete', ?, ?)",
                    (fact_id, text),
                )
            for table in ("fact_meta", "publish_queue", "anchor_queue", "batch_facts", "hidden"):
                cur.execute(f"DELETE FROM {table} WHERE fact_id = ?", (fact_id,))
            unlink(cur, fact_id, cid)
            unlink_duplicates(cur, fact_id)
            cur.execute("DELETE FROM facts WHERE id = ?", (fact_id,))
            cur.execute(
                "INSERT OR REPLACE INTO erased (fact_id, cid, erased_at) VALUES (?, ?, ?)",
                (fact_id, cid, time.time()),
            )
        self._checkpoint()
        return fact_id

    def erased_ids(self) -> Ids:
        with self._cursor() as cur:
            rows = cur.execute("SELECT fact_id FROM erased ORDER BY fact_id")
            return np.fromiter((r[0] for r in rows), dtype=np.int64)
