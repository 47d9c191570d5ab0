"""The catalog's table of signed records of kinds other than fact (tombstones, ...).

Facts have their own tables (text, vectors, keyword index); every other kind is stored whole
in ``records``: its canonical block, the checked signature, its kind, the CID it is about
(``subject``, indexed: "which tombstones name this fact?") and its publication and anchoring
state (the columns ``published``, ``anchor_queued_at``, ``batch_id`` and ``proof`` play the
part ``publish_queue``, ``anchor_queue`` and ``batch_facts`` play for facts). Records are
kept forever: they are small, and they are what makes a correction stick.

Invariant: a row is written once, in the transaction that acknowledges it; only its
publication and anchoring columns change afterwards.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager

from index.sqlite_anchors import chunks
from node.kinds import subject_of
from node.ports import StoredRecord
from node.records import SignedRecord

RECORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    cid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT,
    contributor TEXT,
    block BLOB NOT NULL,
    signature TEXT NOT NULL,
    stored_at REAL NOT NULL,
    published INTEGER NOT NULL DEFAULT 0,
    anchor_queued_at REAL,
    batch_id INTEGER REFERENCES batches(id),
    proof BLOB
);
CREATE INDEX IF NOT EXISTS records_subject ON records(subject, kind);
CREATE INDEX IF NOT EXISTS records_unpublished ON records(stored_at) WHERE published = 0;
CREATE INDEX IF NOT EXISTS records_anchor_queue ON records(anchor_queued_at)
    WHERE anchor_queued_at IS NOT NULL;
"""

_COLUMNS = "cid, kind, subject, contributor, block, signature, stored_at"


def _stored(row: Sequence[object]) -> StoredRecord:
    cid, kind, subject, contributor, block, signature, stored_at = row
    return StoredRecord(
        cid=str(cid),
        kind=str(kind),
        subject=None if subject is None else str(subject),
        contributor=None if contributor is None else str(contributor),
        block=bytes(block),  # type: ignore[call-overload]
        signature=str(signature),
        stored_at=float(stored_at),  # type: ignore[arg-type]
    )


class RecordTables:
    """Mixed into ``SqliteCatalog``; uses its transactional cursor."""

    def _cursor(self, write: bool = False) -> AbstractContextManager[sqlite3.Cursor]:
        raise NotImplementedError

    def put_records(self, records: Sequence[SignedRecord], anchor: bool) -> list[bool]:
        out: list[bool] = []
        now = time.time()
        with self._cursor(write=True) as cur:
            for record in records:
                cur.execute(
                    "INSERT OR IGNORE INTO records (cid, kind, subject, contributor, block, "
                    "signature, stored_at, anchor_queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.cid,
                        record.kind,
                        subject_of(record.body),
                        record.contributor,
                        record.block,
                        record.signature,
                        now,
                        now if anchor else None,
                    ),
                )
                out.append(cur.rowcount == 1)
        return out

    def get_record(self, cid: str) -> StoredRecord | None:
        with self._cursor() as cur:
            row = cur.execute(f"SELECT {_COLUMNS} FROM records WHERE cid = ?", (cid,)).fetchone()
        return None if row is None else _stored(row)

    def held_records(self, cids: Sequence[str]) -> set[str]:
        held: set[str] = set()
        with self._cursor() as cur:
            for chunk in chunks(list(cids)):
                marks = ",".join("?" * len(chunk))
                held.update(
                    r[0]
                    for r in cur.execute(f"SELECT cid FROM records WHERE cid IN ({marks})", chunk)
                )
        return held

    def records_about(self, subjects: Sequence[str], kind: str) -> list[StoredRecord]:
        out: list[StoredRecord] = []
        with self._cursor() as cur:
            for chunk in chunks(list(subjects)):
                marks = ",".join("?" * len(chunk))
                out += [
                    _stored(row)
                    for row in cur.execute(
                        f"SELECT {_COLUMNS} FROM records WHERE kind = ? AND subject IN ({marks}) "
                        "ORDER BY cid",
                        [kind, *chunk],
                    )
                ]
        return out

    def records_of_kind(self, kind: str) -> list[StoredRecord]:
        with self._cursor() as cur:
            return [
                _stored(row)
                for row in cur.execute(
                    f"SELECT {_COLUMNS} FROM records WHERE kind = ? ORDER BY cid", (kind,)
                )
            ]

    def record_counts(self) -> dict[str, int]:
        with self._cursor() as cur:
            rows = cur.execute("SELECT kind, count(*) FROM records GROUP BY kind").fetchall()
        return {str(kind): int(n) for kind, n in rows}

    # -- helpers for the catalog's union views ----------------------------------------------

    @staticmethod
    def _record_cids(cur: sqlite3.Cursor) -> list[str]:
        return [r[0] for r in cur.execute("SELECT cid FROM records")]

    @staticmethod
    def _record_blocks(cur: sqlite3.Cursor, chunk: list[object]) -> list[tuple[bytes, str]]:
        marks = ",".join("?" * len(chunk))
        return [
            (bytes(block), str(sig))
            for block, sig in cur.execute(
                f"SELECT block, signature FROM records WHERE cid IN ({marks})", chunk
            )
        ]
