"""Range-based set reconciliation of fact CIDs (after Meyer, "Range-Based Set Reconciliation").

Items are binary CIDs in byte order. The fingerprint of a range is
``sha256(count as 8 bytes big-endian || (sum of sha256(item) mod 2**256) as 32 bytes)[:16]``,
computed in O(log n) from prefix sums. A round: the initiator sends ranges with its own
fingerprints; the responder skips the ranges whose fingerprint matches its own, answers small
ranges (at most ``LEAF_SIZE`` of its items) with the item list, and splits the others into
``BRANCH`` sub-ranges with its fingerprints, which the initiator compares locally and sends
back only where they differ. Matching ranges stop at once, so the cost grows with the
difference (about d * log_BRANCH(n) ranges) rather than with n.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FP_BYTES = 16
LEAF_SIZE = 32
BRANCH = 16
MAX_RANGES = 2048
_MOD = 2**256

#: A range [lo, hi) of items; hi None means unbounded.
Bound = bytes | None


@dataclass(frozen=True, slots=True)
class Range:
    lo: bytes
    hi: Bound
    fingerprint: bytes


class ItemSet:
    """An immutable sorted set of items with O(log n) range fingerprints."""

    def __init__(self, items: Sequence[bytes]) -> None:
        self.items = sorted(set(items))
        self._prefix = [0]
        total = 0
        for item in self.items:
            total = (total + int.from_bytes(hashlib.sha256(item).digest(), "big")) % _MOD
            self._prefix.append(total)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, bytes):
            return False
        i = bisect.bisect_left(self.items, item)
        return i < len(self.items) and self.items[i] == item

    def span(self, lo: bytes, hi: Bound) -> tuple[int, int]:
        i = bisect.bisect_left(self.items, lo)
        j = len(self.items) if hi is None else bisect.bisect_left(self.items, hi)
        return i, max(i, j)

    def fingerprint(self, lo: bytes, hi: Bound) -> bytes:
        i, j = self.span(lo, hi)
        return _fingerprint(j - i, (self._prefix[j] - self._prefix[i]) % _MOD)

    def digest(self) -> str:
        """The fingerprint of the whole set, as hex: equal sets have equal digests."""
        return self.fingerprint(b"", None).hex()


def _fingerprint(count: int, total: int) -> bytes:
    return hashlib.sha256(count.to_bytes(8, "big") + total.to_bytes(32, "big")).digest()[:FP_BYTES]


def initial_request(own: ItemSet) -> dict[str, Any]:
    return {"t": "recon", "ranges": [[b"", None, own.fingerprint(b"", None)]]}


def respond(own: ItemSet, request: dict[str, Any]) -> dict[str, Any]:
    """The responder's answer to a ``recon`` request (see the module docstring)."""
    ranges = _ranges(request)
    out_ranges: list[list[Any]] = []
    out_ids: list[list[Any]] = []
    for r in ranges:
        i, j = own.span(r.lo, r.hi)
        if own.fingerprint(r.lo, r.hi) == r.fingerprint:
            continue
        if j - i <= LEAF_SIZE:
            out_ids.append([r.lo, r.hi, own.items[i:j]])
            continue
        step = (j - i + BRANCH - 1) // BRANCH
        lo = r.lo
        for start in range(i, j, step):
            hi: Bound = own.items[start + step] if start + step < j else r.hi
            out_ranges.append([lo, hi, own.fingerprint(lo, hi)])
            if hi is not None:
                lo = hi
    return {"t": "recon", "ranges": out_ranges, "ids": out_ids}


def absorb(own: ItemSet, response: dict[str, Any]) -> tuple[list[bytes], dict[str, Any] | None]:
    """Items the responder has and we lack, and the next request (None when done)."""
    missing: list[bytes] = []
    ids = response.get("ids")
    if not isinstance(ids, list):
        raise ValueError("recon response needs an ids list")
    for entry in ids:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], list)):
            raise ValueError("ids entries are [lo, hi, [item, ...]]")
        for item in entry[2]:
            if not isinstance(item, bytes):
                raise ValueError("items are byte strings")
            if item not in own:
                missing.append(item)
    again = [
        [r.lo, r.hi, mine]
        for r in _ranges(response)
        if (mine := own.fingerprint(r.lo, r.hi)) != r.fingerprint
    ]
    return missing, ({"t": "recon", "ranges": again} if again else None)


def _ranges(message: dict[str, Any]) -> list[Range]:
    ranges = message.get("ranges")
    if not isinstance(ranges, list) or len(ranges) > MAX_RANGES * BRANCH:
        raise ValueError("ranges must be a list of at most a bounded number of ranges")
    out = []
    for entry in ranges:
        if not isinstance(entry, list) or len(entry) != 3:
            raise ValueError("a range is [lo, hi, fingerprint]")
        lo, hi, fp = entry
        if not isinstance(lo, bytes) or not (hi is None or isinstance(hi, bytes)):
            raise ValueError("range bounds are byte strings (hi may be null)")
        if not isinstance(fp, bytes) or len(fp) != FP_BYTES:
            raise ValueError(f"fingerprints are {FP_BYTES} bytes")
        out.append(Range(lo, hi, fp))
    return out


def reconcile_locally(mine: ItemSet, theirs: ItemSet) -> tuple[list[bytes], int, int]:
    """Run the protocol between two in-memory sets: (missing items, rounds, ranges sent).
    For tests and for measuring the cost of a difference."""
    request: dict[str, Any] | None = initial_request(mine)
    missing: list[bytes] = []
    rounds = sent = 0
    while request is not None:
        rounds += 1
        sent += len(request["ranges"])
        found, request = absorb(mine, respond(theirs, request))
        missing += found
    return missing, rounds, sent
