"""The anchoring tables of the SQLite catalog: queue, batches and per-record proofs.

Facts wait in ``anchor_queue`` and get their proof in ``batch_facts``; records of other kinds
keep the same state in their own row (``index.sqlite_records``); every method here covers
both, so a batch may hold records of any kind.

``anchor_queue`` holds facts not yet in a batch (filled in the same transaction that stores a
fact, so nothing acknowledged escapes anchoring); sealing a batch moves its facts to
``batch_facts`` with their Merkle proofs and creates the ``batches`` row in one transaction.
A batch's transaction (nonce, hash and raw bytes) is written *before* it is broadcast, so after
a crash the node knows what it may have sent and can look it up instead of sending again.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager

from node.facts import DEFAULT_COLLECTION
from node.kinds import decode_record
from node.provenance import Batch, BatchStatus, Provenance

ANCHOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS anchor_queue (
    fact_id INTEGER PRIMARY KEY REFERENCES facts(id),
    queued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    root BLOB NOT NULL UNIQUE,
    manifest_cid TEXT NOT NULL,
    count INTEGER NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    nonce INTEGER,
    tx_hash TEXT,
    raw_tx BLOB,
    sent_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    chain_id INTEGER,
    registry TEXT,
    block_number INTEGER,
    anchored_at INTEGER,
    submitter TEXT
);
CREATE INDEX IF NOT EXISTS batches_status ON batches(status);
CREATE TABLE IF NOT EXISTS batch_facts (
    fact_id INTEGER PRIMARY KEY REFERENCES facts(id),
    batch_id INTEGER NOT NULL REFERENCES batches(id),
    proof BLOB NOT NULL
);
"""

_BATCH_COLUMNS = (
    "id, root, manifest_cid, count, created_at, status, nonce, tx_hash, raw_tx, sent_at, "
    "attempts, chain_id, registry, block_number, anchored_at, submitter"
)


def _batch(row: Sequence[object]) -> Batch:
    (
        batch_id,
        root,
        manifest_cid,
        count,
        created_at,
        status,
        nonce,
        tx_hash,
        raw_tx,
        sent_at,
        attempts,
        chain_id,
        registry,
        block_number,
        anchored_at,
        submitter,
    ) = row
    return Batch(
        id=int(batch_id),  # type: ignore[call-overload]
        root=bytes(root),  # type: ignore[call-overload]
        manifest_cid=str(manifest_cid),
        count=int(count),  # type: ignore[call-overload]
        created_at=float(created_at),  # type: ignore[arg-type]
        status=BatchStatus(str(status)),
        nonce=None if nonce is None else int(nonce),  # type: ignore[call-overload]
        tx_hash=None if tx_hash is None else str(tx_hash),
        raw_tx=None if raw_tx is None else bytes(raw_tx),  # type: ignore[call-overload]
        sent_at=None if sent_at is None else float(sent_at),  # type: ignore[arg-type]
        attempts=int(attempts),  # type: ignore[call-overload]
        chain_id=None if chain_id is None else int(chain_id),  # type: ignore[call-overload]
        registry=None if registry is None else str(registry),
        block_number=None if block_number is None else int(block_number),  # type: ignore[call-overload]
        anchored_at=None if anchored_at is None else int(anchored_at),  # type: ignore[call-overload]
        submitter=None if submitter is None else str(submitter),
    )


def split_proof(blob: bytes) -> list[bytes]:
    return [blob[i : i + 32] for i in range(0, len(blob), 32)]


class AnchorTables:
    """Mixed into ``SqliteCatalog``; uses its transactional cursor."""

    def _cursor(self, write: bool = False) -> AbstractContextManager[sqlite3.Cursor]:
        raise NotImplementedError

    def anchor_backlog(self) -> tuple[int, float | None]:
        with self._cursor() as cur:
            count, oldest = cur.execute(
                "SELECT count(*), min(t) FROM (SELECT queued_at AS t FROM anchor_queue "
                "UNION ALL SELECT anchor_queued_at FROM records WHERE anchor_queued_at IS NOT NULL)"
            ).fetchone()
        return int(count), None if oldest is None else float(oldest)

    def queued_for_anchor(self, limit: int) -> list[tuple[str, str, str | None]]:
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT cid, kind, coll FROM (SELECT f.cid AS cid, 'fact' AS kind, "
                "coalesce(f.collection, ?) AS coll, q.queued_at AS t, q.fact_id AS n "
                "FROM anchor_queue q JOIN facts f ON f.id = q.fact_id "
                "UNION ALL SELECT cid, kind, NULL, anchor_queued_at, 0 FROM records "
                "WHERE anchor_queued_at IS NOT NULL) ORDER BY t, n LIMIT ?",
                (DEFAULT_COLLECTION, limit),
            ).fetchall()
        return [(str(cid), str(kind), None if c is None else str(c)) for cid, kind, c in rows]

    def seal_batch(self, root: bytes, manifest_cid: str, proofs: dict[str, list[bytes]]) -> Batch:
        now = time.time()
        with self._cursor(write=True) as cur:
            cur.execute(
                "INSERT INTO batches (root, manifest_cid, count, created_at, status) "
                "VALUES (?, ?, ?, ?, ?)",
                (root, manifest_cid, len(proofs), now, BatchStatus.SEALED.value),
            )
            batch_id = int(cur.lastrowid or 0)
            for cid, proof in proofs.items():
                _place_in_batch(cur, cid, batch_id, b"".join(proof))
        return Batch(batch_id, root, manifest_cid, len(proofs), now)

    def batches(self, statuses: Sequence[BatchStatus]) -> list[Batch]:
        marks = ",".join("?" * len(statuses))
        with self._cursor() as cur:
            rows = cur.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches WHERE status IN ({marks}) ORDER BY id",
                [s.value for s in statuses],
            ).fetchall()
        return [_batch(r) for r in rows]

    def adopt_batch(self, batch: Batch, proofs: dict[str, list[bytes]]) -> int:
        adopted = 0
        with self._cursor(write=True) as cur:
            if cur.execute("SELECT 1 FROM batches WHERE root = ?", (batch.root,)).fetchone():
                return 0
            cur.execute(
                "INSERT INTO batches (root, manifest_cid, count, created_at, status, tx_hash, "
                "chain_id, registry, block_number, anchored_at, submitter) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    batch.root,
                    batch.manifest_cid,
                    batch.count,
                    time.time(),
                    BatchStatus.ANCHORED.value,
                    batch.tx_hash,
                    batch.chain_id,
                    batch.registry,
                    batch.block_number,
                    batch.anchored_at,
                    batch.submitter,
                ),
            )
            batch_id = int(cur.lastrowid or 0)
            for cid, proof in proofs.items():
                adopted += _place_in_batch(cur, cid, batch_id, b"".join(proof))
        return adopted

    def save_batch(self, batch: Batch) -> None:
        with self._cursor(write=True) as cur:
            cur.execute(
                "UPDATE batches SET status = ?, nonce = ?, tx_hash = ?, raw_tx = ?, sent_at = ?, "
                "attempts = ?, chain_id = ?, registry = ?, block_number = ?, anchored_at = ?, "
                "submitter = ? WHERE id = ?",
                (
                    batch.status.value,
                    batch.nonce,
                    batch.tx_hash,
                    batch.raw_tx,
                    batch.sent_at,
                    batch.attempts,
                    batch.chain_id,
                    batch.registry,
                    batch.block_number,
                    batch.anchored_at,
                    batch.submitter,
                    batch.id,
                ),
            )

    def batch_cids(self, batch_id: int) -> list[tuple[str, str]]:
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT f.cid, 'fact' FROM batch_facts b JOIN facts f ON f.id = b.fact_id "
                "WHERE b.batch_id = ? UNION ALL SELECT cid, kind FROM records WHERE batch_id = ? "
                "ORDER BY 1",
                (batch_id, batch_id),
            ).fetchall()
        return [(str(cid), str(kind)) for cid, kind in rows]

    def provenance(self, cid: str) -> Provenance | None:
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT f.block, f.signature, b.batch_id, b.proof FROM facts f "
                "LEFT JOIN batch_facts b ON b.fact_id = f.id WHERE f.cid = ? UNION ALL "
                "SELECT block, signature, batch_id, proof FROM records WHERE cid = ?",
                (cid, cid),
            ).fetchone()
            if row is None:
                return None
            block, signature, batch_id, proof = row
            batch = None
            if batch_id is not None:
                batch = _batch(
                    cur.execute(
                        f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,)
                    ).fetchone()
                )
        record = decode_record(bytes(block))
        return Provenance(
            cid=cid,
            record=record.record(),
            contributor=record.contributor,
            signature=None if signature is None else str(signature),
            batch=batch,
            proof=[] if proof is None else split_proof(bytes(proof)),
            block=bytes(block),
        )

    def anchored_blocks(self, ids: Sequence[int]) -> dict[int, int]:
        """Fact id -> block number of its anchor, for the anchored ones among ``ids``."""
        out: dict[int, int] = {}
        with self._cursor() as cur:
            for chunk in chunks(list(ids)):
                marks = ",".join("?" * len(chunk))
                for fact_id, block in cur.execute(
                    "SELECT bf.fact_id, b.block_number FROM batch_facts bf "
                    "JOIN batches b ON b.id = bf.batch_id "
                    f"WHERE b.status = 'anchored' AND bf.fact_id IN ({marks})",
                    chunk,
                ):
                    out[int(fact_id)] = int(block)
        return out


def _place_in_batch(cur: sqlite3.Cursor, cid: str, batch_id: int, proof: bytes) -> int:
    """Give the record ``cid`` (a fact or a record of another kind) its place in a batch
    unless it has one, and take it off the anchoring queue; 1 when placed, else 0."""
    row = cur.execute("SELECT id FROM facts WHERE cid = ?", (cid,)).fetchone()
    if row is not None:
        cur.execute(
            "INSERT OR IGNORE INTO batch_facts (fact_id, batch_id, proof) VALUES (?, ?, ?)",
            (row[0], batch_id, proof),
        )
        placed = cur.rowcount
        cur.execute("DELETE FROM anchor_queue WHERE fact_id = ?", (row[0],))
        return placed
    cur.execute(
        "UPDATE records SET batch_id = ?, proof = ?, anchor_queued_at = NULL "
        "WHERE cid = ? AND batch_id IS NULL",
        (batch_id, proof, cid),
    )
    return cur.rowcount


#: SQLite's limit on bound parameters is 32,766; stay below it.
SQLITE_MAX_VARS = 30_000


def chunks(items: Sequence[object]) -> Iterator[list[object]]:
    """``items`` in lists small enough to bind as SQL parameters."""
    for start in range(0, len(items), SQLITE_MAX_VARS):
        yield list(items[start : start + SQLITE_MAX_VARS])
