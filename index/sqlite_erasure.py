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
from contextlib import AbstractContextManager


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
            # external-content FTS5: the 'delete' command needs the indexed text once more
            cur.execute(
                "INSERT INTO facts_fts (facts_fts, rowid, text) VALUES ('delete', ?, ?)",
                (fact_id, text),
            )
            for table in ("fact_meta", "publish_queue", "anchor_queue", "batch_facts"):
                cur.execute(f"DELETE FROM {table} WHERE fact_id = ?", (fact_id,))
            cur.execute("DELETE FROM facts WHERE id = ?", (fact_id,))
        self._checkpoint()
        return fact_id
