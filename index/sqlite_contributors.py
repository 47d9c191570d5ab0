"""Contributors in the SQLite catalog: whose each fact is, and how many facts each key has.

Curation (``node.curation``) asks these when an attestation names a fact (the edge of the
attestation graph goes to the fact's contributor) and when ``/v1/contributors/{address}``
counts a key's facts. ``facts_contributor`` is the index that keeps the count from scanning.
A fact a tombstone erased here was its signer's (``node.revocation`` erases only then), so an
attestation about it still finds whose it was.

Invariant: read-only; the answers are what the catalog holds at the time of the call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager

from index.sqlite_anchors import chunks
from node.ports import FactRef

CONTRIBUTORS_SCHEMA = "CREATE INDEX IF NOT EXISTS facts_contributor ON facts(contributor);"


class ContributorTables:
    """Mixed into ``SqliteCatalog``; uses its read cursor."""

    def _cursor(self, write: bool = False) -> AbstractContextManager[sqlite3.Cursor]:
        raise NotImplementedError

    def fact_refs(self, ids: Sequence[int]) -> dict[int, FactRef]:
        found: dict[int, FactRef] = {}
        with self._cursor() as cur:
            for chunk in chunks(list(ids)):
                marks = ",".join("?" * len(chunk))
                for fact_id, cid, contributor in cur.execute(
                    f"SELECT id, cid, contributor FROM facts WHERE id IN ({marks})", chunk
                ):
                    found[int(fact_id)] = FactRef(str(cid), contributor)
        return found

    def contributors_of(self, cids: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        with self._cursor() as cur:
            for chunk in chunks(list(cids)):
                marks = ",".join("?" * len(chunk))
                rows = cur.execute(
                    f"SELECT cid, contributor FROM facts WHERE cid IN ({marks})", chunk
                ).fetchall()
                rows += cur.execute(  # erased here: the tombstone's signer was the contributor
                    "SELECT records.subject, records.contributor FROM erased JOIN records "
                    "ON records.subject = erased.cid AND records.kind = 'tombstone' "
                    f"WHERE erased.cid IN ({marks})",
                    chunk,
                ).fetchall()
                for cid, contributor in rows:
                    found.setdefault(str(cid), None if contributor is None else str(contributor))
        return found

    def facts_by(self, contributor: str) -> int:
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT count(*) FROM facts WHERE contributor = ?", (contributor,)
            ).fetchone()
        return int(row[0])
