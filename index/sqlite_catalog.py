"""The SQLite catalog: the node's source of truth.

One database in WAL mode with ``synchronous=FULL``: a contribution is acknowledged only after
its transaction is on disk, so it survives ``kill -9`` and power loss. It holds each fact's
canonical block, its metadata (also exploded into ``fact_meta`` for exact filters), its
embedding (so the vector index can always be rebuilt without the model) and an FTS5 table
(porter stemmer) for BM25 keyword search.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from index.keywords import fts_query
from index.sqlite_anchors import ANCHOR_SCHEMA, AnchorTables, chunks
from index.sqlite_collections import (
    CollectionTables,
    add_collection_column,
    holds_records,
    set_clause,
    stored_collection,
)
from index.sqlite_contributors import CONTRIBUTORS_SCHEMA, ContributorTables
from index.sqlite_duplicates import (
    DUPLICATES_SCHEMA,
    NOT_DUPLICATE,
    DuplicateTables,
    link_duplicate,
    seed_text_keys,
)
from index.sqlite_erasure import ERASURE_SCHEMA, NEXT_FACT_ID, ErasureTables
from index.sqlite_filters import filter_sql
from index.sqlite_moderation import MODERATION_SCHEMA, ModerationTables
from index.sqlite_records import RECORDS_SCHEMA, RecordTables
from index.sqlite_supersession import (
    SUPERSESSION_SCHEMA,
    SupersessionTables,
    add_supersedes_column,
    link,
)
from node.errors import StorageError
from node.facts import DEFAULT_COLLECTION, metadata_json_string, metadata_to_json
from node.filters import MetadataFilter, encode_scalar
from node.ports import Ids, NewFact, StoredFact, Vectors
from node.search import Hit

log = logging.getLogger(__name__)

SCHEMA_VERSION = "3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS facts (
    id INTEGER PRIMARY KEY,
    cid TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    contributor TEXT,
    signature TEXT,
    block BLOB NOT NULL,
    vector BLOB NOT NULL,
    stored_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fact_meta (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    fact_id INTEGER NOT NULL REFERENCES facts(id) ON DELETE CASCADE,
    PRIMARY KEY (key, value, fact_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS publish_queue (fact_id INTEGER PRIMARY KEY REFERENCES facts(id));
CREATE VIRTUAL TABLE IF NOT EXISTS facts_fts USING fts5(
    text, content='facts', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
"""


class SqliteCatalog(
    AnchorTables,
    CollectionTables,
    RecordTables,
    ErasureTables,
    ModerationTables,
    SupersessionTables,
    ContributorTables,
    DuplicateTables,
):
    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        try:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA secure_delete=ON")  # erased facts leave zeroed pages
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            self._db.executescript(ANCHOR_SCHEMA)
            self._db.executescript(RECORDS_SCHEMA)
            self._db.executescript(MODERATION_SCHEMA)
            self._db.executescript(ERASURE_SCHEMA)
            self._db.executescript(SUPERSESSION_SCHEMA)
            add_supersedes_column(self._db)
            add_collection_column(self._db)
            self._db.executescript(CONTRIBUTORS_SCHEMA)
            self._db.executescript(DUPLICATES_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open catalog {self._path}: {exc}") from exc
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        #: Reads in progress on the per-thread connections, and whether close() has begun:
        #: closing a connection another thread is reading with crashes the process (SIGSEGV in
        #: CPython's sqlite3), so close() waits for them and later reads are refused.
        self._reads = threading.Condition()
        self._active_reads = 0
        self._closed = False
        if self.get_setting("publish_queue_seeded") is None:
            # catalogs written before the content store existed: publish every fact once
            with self._cursor(write=True) as cur:
                cur.execute("INSERT OR IGNORE INTO publish_queue (fact_id) SELECT id FROM facts")
                cur.execute("INSERT OR REPLACE INTO settings VALUES ('publish_queue_seeded', '1')")
        with self._lock:
            try:
                seed_text_keys(self._db)
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StorageError(f"cannot key the catalog's texts: {exc}") from exc
        version = self.get_setting("schema_version")
        if version == "1":
            self._migrate_1_to_2()
            version = "2"
        if version in ("2", None):  # 3 adds the records table (created above when missing)
            self.set_setting("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise StorageError(
                f"catalog {self._path} has schema {version}, this node reads {SCHEMA_VERSION}"
            )

    def _migrate_1_to_2(self) -> None:
        """Version 2 adds signatures and anchoring; every existing fact joins the queue."""
        with self._cursor(write=True) as cur:
            cur.execute("ALTER TABLE facts ADD COLUMN signature TEXT")
            cur.execute("INSERT OR IGNORE INTO anchor_queue SELECT id, stored_at FROM facts")
            cur.execute("INSERT OR REPLACE INTO settings VALUES ('schema_version', '2')")
        log.info("catalog %s migrated to schema 2 (signatures, anchoring)", self._path)

    @contextmanager
    def _cursor(self, write: bool = False) -> Iterator[sqlite3.Cursor]:
        """Writes go through the one writer connection, serialised; reads use a connection of
        their own thread, so queries never wait behind a write transaction (WAL readers see
        the last committed state and do not block the writer)."""
        if not write and self._path != ":memory:":
            with self._reads:
                if self._closed:
                    raise StorageError("catalog is closed")
                self._active_reads += 1
            try:
                cur = self._reader().cursor()
                try:
                    yield cur
                except sqlite3.Error as exc:
                    raise StorageError(f"catalog error: {exc}") from exc
                finally:
                    cur.close()
            finally:
                with self._reads:
                    self._active_reads -= 1
                    self._reads.notify_all()
            return
        with self._lock:
            cur = self._db.cursor()
            try:
                if write:
                    cur.execute("BEGIN IMMEDIATE")
                yield cur
                if write:
                    cur.execute("COMMIT")
            except sqlite3.Error as exc:
                if write and self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StorageError(f"catalog error: {exc}") from exc
            finally:
                cur.close()

    def _checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (after an erasure)."""
        if self._path == ":memory:":
            return
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint after an erasure failed: %s", exc)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA busy_timeout=5000")
                conn.execute("PRAGMA query_only=ON")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot open catalog {self._path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    # -- writes ------------------------------------------------------------------------------

    def insert(self, facts: Sequence[NewFact]) -> list[tuple[int, bool]]:
        out: list[tuple[int, bool]] = []
        now = time.time()
        with self._cursor(write=True) as cur:
            for item in facts:
                fact = item.fact
                vector = np.ascontiguousarray(item.vector, dtype=np.float32)
                cur.execute(
                    "INSERT OR IGNORE INTO facts (id, cid, text, metadata, contributor, "
                    "signature, block, vector, stored_at, supersedes, collection) VALUES "
                    f"({NEXT_FACT_ID}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        fact.cid,
                        fact.text,
                        metadata_json_string(fact.metadata),
                        fact.contributor,
                        item.signature,
                        fact.block,
                        vector.tobytes(),
                        now,
                        fact.supersedes,
                        stored_collection(fact),
                    ),
                )
                if cur.rowcount == 0:
                    row = cur.execute(
                        "SELECT id, signature FROM facts WHERE cid = ?", (fact.cid,)
                    ).fetchone()
                    if row[1] is None and item.signature is not None:
                        # a fact first seen unsigned (e.g. from a CAR) gains its signature
                        cur.execute(
                            "UPDATE facts SET signature = ? WHERE id = ?", (item.signature, row[0])
                        )
                    out.append((int(row[0]), False))
                    continue
                fact_id = int(cur.lastrowid or 0)
                link(cur, fact_id, fact)
                link_duplicate(cur, fact_id, fact, item.duplicate_of)
                cur.execute("INSERT INTO publish_queue (fact_id) VALUES (?)", (fact_id,))
                if item.anchor:
                    cur.execute(
                        "INSERT INTO anchor_queue (fact_id, queued_at) VALUES (?, ?)",
                        (fact_id, now),
                    )
                cur.execute(
                    "INSERT INTO facts_fts (rowid, text) VALUES (?, ?)", (fact_id, fact.text)
                )
                cur.executemany(
                    "INSERT OR IGNORE INTO fact_meta (key, value, fact_id) VALUES (?, ?, ?)",
                    [
                        (key, encode_scalar(v), fact_id)
                        for key, value in metadata_to_json(fact.metadata).items()
                        for v in (value if isinstance(value, list) else [value])
                    ],
                )
                out.append((fact_id, True))
        return out

    def set_setting(self, key: str, value: str) -> None:
        with self._cursor(write=True) as cur:
            cur.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))

    # -- reads -------------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        with self._cursor() as cur:
            row = cur.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def existing(self, cids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        with self._cursor() as cur:
            for chunk in chunks(list(cids)):
                marks = ",".join("?" * len(chunk))
                for cid, fact_id in cur.execute(
                    f"SELECT cid, id FROM facts WHERE cid IN ({marks})", chunk
                ):
                    found[cid] = int(fact_id)
        return found

    def get(self, cid: str) -> StoredFact | None:
        with self._cursor() as cur:
            row = cur.execute(
                f"SELECT {_FACT_COLUMNS} WHERE f.cid = ?",
                (cid,),
            ).fetchone()
        if row is None:
            return None
        return replace(_row(row), duplicate_of=self.duplicate_of(cid))

    def get_by_ids(self, ids: Sequence[int]) -> dict[int, StoredFact]:
        out: dict[int, StoredFact] = {}
        with self._cursor() as cur:
            for chunk in chunks(list(ids)):
                marks = ",".join("?" * len(chunk))
                for row in cur.execute(
                    f"SELECT {_FACT_COLUMNS} WHERE f.id IN ({marks})",
                    chunk,
                ):
                    fact = _row(row)
                    out[fact.id] = fact
        return out

    def keyword_search(
        self,
        text: str,
        limit: int,
        flt: MetadataFilter | None = None,
        skip_superseded: bool = False,
    ) -> list[Hit]:
        match = fts_query(text)
        if match is None:
            return []
        where, params = filter_sql(flt, "facts_fts.rowid")
        if skip_superseded:
            where += " AND facts_fts.rowid NOT IN (SELECT fact_id FROM superseded)"
        sql = (
            "SELECT rowid, bm25(facts_fts) AS s FROM facts_fts "
            f"WHERE facts_fts MATCH ? {where} ORDER BY s, rowid LIMIT ?"
        )
        with self._cursor() as cur:
            rows = cur.execute(sql, [match, *params, limit]).fetchall()
        # SQLite's bm25() is negated so that smaller is better; report the usual positive score.
        return [Hit(int(r[0]), -float(r[1])) for r in rows]

    def filter_ids(self, flt: MetadataFilter) -> Ids:
        where, params = filter_sql(flt, "facts.id")
        with self._cursor() as cur:
            rows = cur.execute(f"SELECT id FROM facts WHERE 1 {where} ORDER BY id", params)
            return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def all_ids(self) -> Ids:
        with self._cursor() as cur:
            rows = cur.execute("SELECT id FROM facts ORDER BY id")
            return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def ids(self) -> Ids:
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT id FROM facts WHERE id NOT IN (SELECT fact_id FROM hidden) "
                f"AND {NOT_DUPLICATE} ORDER BY id"
            )
            return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def texts(self, ids: Ids) -> list[str]:
        found = self._column_by_ids("text", ids)
        return [str(found[i]) for i in ids.tolist()]

    def vectors(self, ids: Ids) -> Vectors:
        found = self._column_by_ids("vector", ids)
        return np.stack([np.frombuffer(found[i], dtype=np.float32) for i in ids.tolist()])

    def _column_by_ids(self, column: str, ids: Ids) -> dict[int, Any]:
        """``column`` of every fact in ``ids`` (``StorageError`` naming any that is missing)."""
        found: dict[int, Any] = {}
        with self._cursor() as cur:
            for chunk in chunks(ids.tolist()):
                marks = ",".join("?" * len(chunk))
                for fact_id, value in cur.execute(
                    f"SELECT id, {column} FROM facts WHERE id IN ({marks})", chunk
                ):
                    found[int(fact_id)] = value
        missing = [i for i in ids.tolist() if i not in found]
        if missing:
            raise StorageError(f"catalog has no {column}s for ids {missing[:5]}")
        return found

    def block(self, cid: str) -> bytes | None:
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT block FROM facts WHERE cid = ? UNION ALL "
                "SELECT block FROM records WHERE cid = ?",
                (cid, cid),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def cids(self) -> list[str]:
        with self._cursor() as cur:
            return [r[0] for r in cur.execute("SELECT cid FROM facts ORDER BY cid")]

    def signed_cids(self, set_name: str | None = None) -> list[str]:
        where, args = set_clause(set_name)
        sql = f"SELECT cid FROM facts WHERE signature IS NOT NULL{where}"
        with self._cursor() as cur:
            facts = [r[0] for r in cur.execute(sql, args)]
            return facts + (self._record_cids(cur) if holds_records(set_name) else [])

    def signed_records(self, cids: Sequence[str]) -> list[tuple[bytes, str]]:
        out: list[tuple[bytes, str]] = []
        with self._cursor() as cur:
            for chunk in chunks(list(cids)):
                marks = ",".join("?" * len(chunk))
                out += [
                    (bytes(block), str(sig))
                    for block, sig in cur.execute(
                        f"SELECT block, signature FROM facts WHERE cid IN ({marks}) "
                        "AND signature IS NOT NULL AND id NOT IN (SELECT fact_id FROM hidden)",
                        chunk,
                    )
                ]
                out += self._record_blocks(cur, chunk)
        return out

    def pending_publication(self, limit: int) -> list[tuple[str, bytes]]:
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT f.cid, f.block FROM publish_queue q JOIN facts f ON f.id = q.fact_id "
                "ORDER BY q.fact_id LIMIT ?",
                (limit,),
            ).fetchall()
            if len(rows) < limit:
                rows += cur.execute(
                    "SELECT cid, block FROM records WHERE published = 0 ORDER BY stored_at LIMIT ?",
                    (limit - len(rows),),
                ).fetchall()
        return [(str(cid), bytes(block)) for cid, block in rows]

    def mark_published(self, cids: Sequence[str]) -> None:
        with self._cursor(write=True) as cur:
            for chunk in chunks(list(cids)):
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    "DELETE FROM publish_queue WHERE fact_id IN "
                    f"(SELECT id FROM facts WHERE cid IN ({marks}))",
                    chunk,
                )
                cur.execute(f"UPDATE records SET published = 1 WHERE cid IN ({marks})", chunk)

    def publication_backlog(self) -> int:
        with self._cursor() as cur:
            return int(
                cur.execute(
                    "SELECT (SELECT count(*) FROM publish_queue) + "
                    "(SELECT count(*) FROM records WHERE published = 0)"
                ).fetchone()[0]
            )

    def count(self) -> int:
        with self._cursor() as cur:
            return int(cur.execute("SELECT count(*) FROM facts").fetchone()[0])

    def close(self, read_timeout: float = 60.0) -> None:
        """Close every connection once the reads in progress are done (new ones are refused
        from now on). Reads still running after ``read_timeout`` seconds keep their
        connections open (logged): closing them under a reader would crash the process."""
        with self._reads:
            self._closed = True
            idle = self._reads.wait_for(lambda: self._active_reads == 0, timeout=read_timeout)
        with self._lock:
            if idle:
                for reader in self._readers:
                    reader.close()
                self._readers.clear()
            else:
                log.warning("catalog closed with reads still running; their connections stay")
            self._db.close()


_FACT_COLUMNS = (
    "f.id, f.cid, f.text, f.metadata, f.contributor, f.stored_at, f.signature, f.supersedes, "
    "s.by, f.collection FROM facts f LEFT JOIN superseded s ON s.fact_id = f.id"
)


def _row(row: tuple[object, ...]) -> StoredFact:
    fact_id, cid, text, metadata, contributor, stored_at, signature, supersedes, by, coll = row
    return StoredFact(
        id=int(fact_id),  # type: ignore[call-overload]
        cid=str(cid),
        text=str(text),
        metadata=json.loads(str(metadata)),
        contributor=None if contributor is None else str(contributor),
        stored_at=float(stored_at),  # type: ignore[arg-type]
        signature=None if signature is None else str(signature),
        supersedes=None if supersedes is None else str(supersedes),
        superseded_by=None if by is None else str(by),
        collection=DEFAULT_COLLECTION if coll is None else str(coll),
    )
