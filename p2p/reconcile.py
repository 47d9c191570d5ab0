"""Range-based set reconciliation of fact CIDs (after Meyer, "Range-Based Set Reconciliation").

Items are binary CIDs in byte order. The fingerprint of a range is
``sha256(count as 8 bytes big-endian || (sum of sha256(item) mod 2**256) as 32 bytes)[:16]``,
computed in O(log n) from prefix sums. A round: the initiator sends ranges with its own
fingerprints; the responder skips the ranges whose fingerprint matches its own, answers small
ranges (at most ``LEAF_SIZE`` of its items) with the item list, and splits the others into
``BRANCH`` sub-ranges with its fingerprints, which the initiator compares locally and sends
back only where they differ. Matching ranges stop at once, so the cost grows with the
difference (about d * log_BRANCH(n) ranges) rather than with n.

A responder answers only well-formed requests (``check_request``): ranges sorted and
non-overlapping, bounds at most ``MAX_BOUND_BYTES``, and no more ranges than its own answers
can hold (``max_request_ranges``). Its answer never exceeds ``answer_budget`` bytes
(``ANSWER_RATIO`` times the request, at least ``MIN_ANSWER_BYTES``, at most the frame limit):
when the full answer would, it splits into fewer runs and lists smaller ranges only
(``fanout`` 8, 4, 3 or 2 instead of 16) and, if even that is too much, answers a prefix of the
differing ranges and folds the rest into one range with its fingerprint, which the initiator
simply asks about again. Every answer settles or splits at least its first differing range, so
reconciliation always progresses. Everything here is pure (no I/O).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dag_cbor

from p2p.wire import MAX_SYNC_MESSAGE_BYTES

FP_BYTES = 16
LEAF_SIZE = 32
BRANCH = 16
MAX_RANGES = 2048
#: Longest range bound accepted (bounds are items, i.e. binary CIDs of 36 bytes).
MAX_BOUND_BYTES = 128
#: An answer holds at most this many times the request's bytes ...
ANSWER_RATIO = 4
#: ... but may always use this many (an honest answer to one range fits), ...
MIN_ANSWER_BYTES = 4096
#: ... and never more than a sync frame.
MAX_ANSWER_BYTES = MAX_SYNC_MESSAGE_BYTES
#: Fan-outs tried, largest first, when the full answer is over the budget.
_FANOUTS = (BRANCH, 8, 4, 3, 2)
_MOD = 2**256

#: A range [lo, hi) of items; hi None means unbounded.
Bound = bytes | None


class RequestRefused(ValueError):
    """A ``recon`` request this responder does not answer: malformed or abusive."""


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
        return self.fingerprint_at(i, j)

    def fingerprint_at(self, i: int, j: int) -> bytes:
        return _fingerprint(j - i, (self._prefix[j] - self._prefix[i]) % _MOD)

    def fingerprint_all(self) -> bytes:
        """The fingerprint of the whole set (``digest`` in bytes)."""
        return self.fingerprint(b"", None)

    def digest(self) -> str:
        """The fingerprint of the whole set, as hex: equal sets have equal digests."""
        return self.fingerprint(b"", None).hex()


def _fingerprint(count: int, total: int) -> bytes:
    return hashlib.sha256(count.to_bytes(8, "big") + total.to_bytes(32, "big")).digest()[:FP_BYTES]


def initial_request(own: ItemSet) -> dict[str, Any]:
    return {"t": "recon", "ranges": [[b"", None, own.fingerprint(b"", None)]]}


def max_request_ranges(items: int) -> int:
    """The most ranges a request to a responder holding ``items`` items may carry: an honest
    request only repeats ranges of that responder's previous answer, which splits at most
    ``items // (LEAF_SIZE + 1)`` ranges (the others are listed) into ``BRANCH`` runs each;
    never more than any message may carry (``MAX_RANGES * BRANCH``)."""
    return min(MAX_RANGES * BRANCH, BRANCH * max(1, items // (LEAF_SIZE + 1)))


def answer_budget(request_bytes: int) -> int:
    """The most bytes (DAG-CBOR, without the length prefix) an answer to a request may hold."""
    return min(MAX_ANSWER_BYTES, max(ANSWER_RATIO * request_bytes, MIN_ANSWER_BYTES))


def check_request(own: ItemSet, request: dict[str, Any]) -> list[Range]:
    """The ranges of a ``recon`` request; ``RequestRefused`` unless they are well formed
    (``_ranges``), sorted and non-overlapping, and at most ``max_request_ranges``."""
    try:
        ranges = _ranges(request)
    except ValueError as exc:
        raise RequestRefused(str(exc)) from exc
    limit = max_request_ranges(len(own))
    if len(ranges) > limit:
        raise RequestRefused(f"{len(ranges)} ranges; at most {limit} to a set of {len(own)}")
    _check_order(ranges)
    return ranges


def respond(
    own: ItemSet, request: dict[str, Any], request_bytes: int | None = None
) -> dict[str, Any]:
    """The responder's answer to a ``recon`` request (see the module docstring), at most
    ``answer_budget(request_bytes)`` bytes; ``request_bytes`` is the request's encoded size
    (computed when not given). ``RequestRefused`` for a request it does not answer."""
    ranges = check_request(own, request)
    if request_bytes is None:
        request_bytes = len(dag_cbor.encode(request))
    budget = answer_budget(request_bytes)
    slots = max_request_ranges(len(own))
    differing = [
        (r, i, j)
        for r in ranges
        for i, j in (own.span(r.lo, r.hi),)
        if own.fingerprint_at(i, j) != r.fingerprint
    ]
    for fanout in _FANOUTS:
        answer = _Answer()
        for r, i, j in differing:
            answer.add(_piece(own, r, i, j, fanout))
            if answer.size > budget or len(answer.ranges) > slots:
                break
        else:
            return answer.message()
    # Even runs of two do not fit: answer a prefix, fold the rest into one range.
    answer = _Answer()
    last_hi = differing[-1][0].hi
    for k, (r, i, j) in enumerate(differing):
        piece = _piece(own, r, i, j, 2)
        more = k < len(differing) - 1
        reserve = _range_bytes(differing[k + 1][0].lo, last_hi) if more else 0
        fits = (
            answer.size + piece.size + reserve <= budget
            and len(answer.ranges) + len(piece.ranges) + more <= slots
        )
        if k == 0 or fits:  # the first differing range always progresses
            answer.add(piece)
            continue
        fold = [r.lo, last_hi, own.fingerprint(r.lo, last_hi)]
        answer.add(_Piece([], [fold], _range_bytes(r.lo, last_hi)))
        break
    return answer.message()


@dataclass(slots=True)
class _Piece:
    """The answer to one differing range, with its exact DAG-CBOR size."""

    ids: list[list[Any]]
    ranges: list[list[Any]]
    size: int


def _piece(own: ItemSet, r: Range, i: int, j: int, fanout: int) -> _Piece:
    """List the range's items if they are few, else split the range into ``fanout`` runs."""
    if j - i <= max(1, LEAF_SIZE * fanout // BRANCH):
        items = own.items[i:j]
        size = 1 + _bound_bytes(r.lo) + _bound_bytes(r.hi) + _head(len(items))
        return _Piece([[r.lo, r.hi, items]], [], size + sum(_bound_bytes(x) for x in items))
    step = (j - i + fanout - 1) // fanout
    lo = r.lo
    ranges: list[list[Any]] = []
    size = 0
    for start in range(i, j, step):
        end = min(start + step, j)
        hi: Bound = own.items[end] if end < j else r.hi
        ranges.append([lo, hi, own.fingerprint_at(start, end)])
        size += _range_bytes(lo, hi)
        if hi is not None:
            lo = hi
    return _Piece([], ranges, size)


class _Answer:
    """A response under construction; ``size`` bounds its DAG-CBOR size from above."""

    #: {"t": "recon", "ids": [...], "ranges": [...]} without the list contents; list headers
    #: counted at their largest (5 bytes).
    OVERHEAD = 1 + (1 + 1) + (1 + 5) + (1 + 3) + 5 + (1 + 6) + 5

    def __init__(self) -> None:
        self.ranges: list[list[Any]] = []
        self.ids: list[list[Any]] = []
        self.size = self.OVERHEAD

    def add(self, piece: _Piece) -> None:
        self.ranges += piece.ranges
        self.ids += piece.ids
        self.size += piece.size

    def message(self) -> dict[str, Any]:
        return {"t": "recon", "ranges": self.ranges, "ids": self.ids}


def _head(n: int) -> int:
    """Bytes of a CBOR head carrying the length ``n``."""
    return 1 if n < 24 else 2 if n < 256 else 3 if n < 65536 else 5 if n < 2**32 else 9


def _bound_bytes(bound: Bound) -> int:
    return 1 if bound is None else _head(len(bound)) + len(bound)


def _range_bytes(lo: bytes, hi: Bound) -> int:
    return 1 + _bound_bytes(lo) + _bound_bytes(hi) + _head(FP_BYTES) + FP_BYTES


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
    ranges = _ranges(response)
    _check_order(ranges)
    again = [
        [r.lo, r.hi, mine] for r in ranges if (mine := own.fingerprint(r.lo, r.hi)) != r.fingerprint
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
        if len(lo) > MAX_BOUND_BYTES or (hi is not None and len(hi) > MAX_BOUND_BYTES):
            raise ValueError(f"range bounds are at most {MAX_BOUND_BYTES} bytes")
        if not isinstance(fp, bytes) or len(fp) != FP_BYTES:
            raise ValueError(f"fingerprints are {FP_BYTES} bytes")
        out.append(Range(lo, hi, fp))
    return out


def _check_order(ranges: Sequence[Range]) -> None:
    """Each range non-empty (lo < hi), and each one ending where or before the next begins."""
    previous: Bound = b""
    for k, r in enumerate(ranges):
        if k and (previous is None or r.lo < previous):
            raise RequestRefused("ranges must be sorted and must not overlap")
        if r.hi is not None and r.hi <= r.lo:
            raise RequestRefused("a range must not be empty (lo < hi)")
        previous = r.hi


def reconcile_locally(
    mine: ItemSet, theirs: ItemSet, max_rounds: int = 10_000
) -> tuple[list[bytes], int, int]:
    """Run the protocol between two in-memory sets: (missing items, rounds, ranges sent).
    For tests and for measuring the cost of a difference."""
    request: dict[str, Any] | None = initial_request(mine)
    missing: list[bytes] = []
    rounds = sent = 0
    while request is not None:
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError(f"no agreement after {max_rounds} rounds")
        sent += len(request["ranges"])
        found, request = absorb(mine, respond(theirs, request))
        missing += found
    return missing, rounds, sent
