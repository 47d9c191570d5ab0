"""``knowhub import FILE``: contribute facts from a JSON Lines file, resumably.

Lines go to ``POST /v1/facts/batch`` in batches (signed with ``--key`` when given); a
checkpoint beside the file (FILE.knowhub-progress, replaced atomically after every
acknowledged batch) lets an interrupted import resume where the node last acknowledged, for
the same file version and node. A busy node (429, or 503 with Retry-After) is waited for, not
given up on; bad lines are reported with their line number and never sent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from api import cli_provenance
from api.client import NodeClient, NodeError, NodeUnavailable, RateLimited
from api.schemas import BatchOut


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def run(client: NodeClient, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    path: Path = args.file
    if not path.is_file():
        raise NodeError(0, "usage", f"no such file: {path}")
    key = None if args.key is None else cli_provenance.load_key(args.key)
    checkpoint = Checkpoint(path, args.url)
    done = 0 if args.restart else checkpoint.load()
    with path.open("rb") as fh:
        total = sum(1 for _ in fh)
    counts = {"created": 0, "exists": 0, "error": 0}
    with tqdm(
        total=total, initial=done, unit="fact", disable=args.no_progress, file=sys.stderr
    ) as bar:
        for line_no, batch in _batches(path, args.batch_size, skip=done, beir=args.beir):
            for n, item in batch:
                if isinstance(item, _BadLine):  # reported here, never sent
                    counts["error"] += 1
                    sys.stderr.write(f"line {n}: {item.reason}\n")
            sendable = [(n, item) for n, item in batch if not isinstance(item, _BadLine)]
            items = [item for _, item in sendable]
            if key is not None:
                items = [
                    cli_provenance.signed_submission(key, i) if isinstance(i, dict) else i
                    for i in items
                ]
            if items:
                result = _patiently(
                    partial(client.add_batch, items), partial(bar.write, file=sys.stderr)
                )
                for (n, _), item in zip(sendable, result.results, strict=True):
                    counts[item.status] += 1
                    if item.error is not None:
                        sys.stderr.write(f"line {n}: {item.error.message}\n")
            checkpoint.save(line_no)
            bar.update(len(batch))
    _out(
        f"created {counts['created']}, already stored {counts['exists']}, "
        f"failed {counts['error']}" + (f" (resumed after line {done})" if done else "")
    )
    return 1 if counts["error"] else 0


#: Longest wait on one Retry-After, and how many busy answers in a row an import sits out.
IMPORT_MAX_WAIT = 30.0
IMPORT_MAX_BUSY = 120


def _patiently(send: Callable[[], BatchOut], say: Callable[[str], object]) -> BatchOut:
    """``send`` a batch; while the node answers 429, or 503 with ``Retry-After`` (its ingest
    queue is full: it embeds more slowly than the file is read), wait as long as it asks and
    send the same batch again. Re-sending is safe: records are content-addressed, so a batch
    the node stored before answering comes back as "exists". A 503 without ``Retry-After``
    (the node is failing, not busy) ends the import; its checkpoint resumes it."""
    for attempt in range(1, IMPORT_MAX_BUSY + 1):
        try:
            return send()
        except (RateLimited, NodeUnavailable) as exc:
            if exc.retry_after is None or attempt == IMPORT_MAX_BUSY:
                raise
            wait = min(max(exc.retry_after, 0.05), IMPORT_MAX_WAIT)
            say(f"node busy ({exc.status}): sending the batch again in {wait:g} s")
            time.sleep(wait)
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class _BadLine:
    """A line of an import file that cannot be a submission (reported, not sent)."""

    reason: str


def _batches(
    path: Path, size: int, *, skip: int, beir: bool
) -> Iterator[tuple[int, list[tuple[int, Any]]]]:
    """Yield (lines consumed so far, [(line number, submission)]) per batch."""
    batch: list[tuple[int, Any]] = []
    line_no = 0
    with path.open("r", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if line_no <= skip or not line.strip():
                continue
            try:
                obj: Any = json.loads(line)
            except ValueError as exc:
                obj = _BadLine(f"not JSON ({exc})")
            if beir and isinstance(obj, dict) and "_id" in obj:
                title = str(obj.get("title") or "").strip()
                obj = {
                    "text": f"{title} {obj.get('text', '')}".strip(),
                    "metadata": {"doc_id": str(obj["_id"])},
                }
            batch.append((line_no, obj))
            if len(batch) >= size:
                yield line_no, batch
                batch = []
    if batch:
        yield line_no, batch


class Checkpoint:
    """Lines of FILE acknowledged by the node, in FILE.knowhub-progress (atomic writes)."""

    def __init__(self, path: Path, url: str) -> None:
        self.file = path.with_name(path.name + ".knowhub-progress")
        stat = path.stat()
        self.key = {"url": url, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def load(self) -> int:
        try:
            saved = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return 0
        if not isinstance(saved, dict) or saved.get("key") != self.key:
            return 0  # another file version or node: start over (re-posting is idempotent)
        return int(saved.get("lines", 0))

    def save(self, lines: int) -> None:
        tmp = self.file.with_name(self.file.name + ".tmp")
        tmp.write_text(json.dumps({"key": self.key, "lines": lines}))
        os.replace(tmp, self.file)
