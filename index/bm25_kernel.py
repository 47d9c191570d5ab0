"""The keyword index's inner loops, compiled (numba, nopython mode, GIL released).

What it owns
    The per-posting work of a top-k BM25 query (``index.bm25_index`` calls it under its lock):
    ``accumulate`` adds one query term's contributions into a dense per-slot accumulator and
    notes each slot it touches first; ``select`` keeps the best k touched slots that are live
    and allowed, by (score desc, id asc), and clears the accumulator behind it; ``gather``
    clears it the same way but hands back every such slot (for predicate filters, which stay
    in Python). Scratch buffers (``Scratch``) are owned by the index and reused across
    queries, so a query allocates nothing proportional to the corpus.

Why compiled
    Term at a time in numpy costs a pass per temporary over every posting, an allocation the
    size of the corpus for the sums, a scan of it for the non-zero ones and a partition of the
    candidates: ~3.5 ms on SciFact claims at a million facts, most of a hybrid query
    (BENCHMARKS.md). The same arithmetic as one loop touches each posting once.

Invariants
    - Bit-identical to the numpy scorer it replaces and to ``node.keyword_stats.bm25_scores``:
      each contribution is ``w * tf * (k1 + 1) / (tf + (c0 + c1 * dl))`` in float64, in this
      order of operations (no fast-math, no contraction), and a slot's sum adds its terms'
      contributions in query-term order starting from 0.0.
    - Every contribution is > 0 (weights >= 1, idf floored at 1e-6, tf >= 1), so a slot's sum
      is 0.0 exactly when no term has touched it yet: that is how a first touch is noticed.
    - The accumulator is all zero between queries: ``select`` and ``gather`` zero every touched
      slot, and the caller zeroes the whole buffer if anything fails in between
      (``Scratch.reset``).
    - ``select``'s order is total: ties in score go to the smaller id.
    - Compiled without bounds checks, so every index is in range by construction: postings
      name slots below the store's slot count (``index.bm25_postings`` numbers them as it
      appends or builds), the accumulator has at least that many, and the touched list one
      more (``Scratch.fit``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

try:  # numba ships no type stubs
    import numba as _numba
except ImportError as exc:  # pragma: no cover - a pinned dependency
    raise ImportError("the keyword index needs numba (a pinned dependency)") from exc

numba: Any = _numba

Int32Array = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_JIT = {"nopython": True, "nogil": True, "cache": True}


@numba.jit(**_JIT)  # type: ignore[untyped-decorator]
def accumulate(
    slots: Int32Array,
    tfs: Int32Array,
    weight: float,
    dl: Int64Array,
    c0: float,
    c1: float,
    k1p1: float,
    acc: FloatArray,
    touched: Int64Array,
    n_touched: int,
) -> int:  # pragma: no cover - compiled; run through the index's tests
    """Add one term's contributions (``weight`` = its query weight times idf) to ``acc``;
    append each slot touched for the first time to ``touched``; the new touched count."""
    n = n_touched
    for j in range(slots.shape[0]):
        s = slots[j]
        tf = np.float64(tfs[j])
        value = weight * tf * k1p1 / (tf + (c0 + c1 * dl[s]))
        before = acc[s]
        touched[n] = s  # kept only on a first touch (branch-free: the test is a coin toss)
        n += before == 0.0
        acc[s] = before + value
    return n


@numba.jit(**_JIT)  # type: ignore[untyped-decorator]
def _member(value: int, sorted_ids: Int64Array) -> bool:  # pragma: no cover - compiled
    pos = np.searchsorted(sorted_ids, value)
    found: bool = pos < sorted_ids.shape[0] and sorted_ids[pos] == value
    return found


@numba.jit(**_JIT)  # type: ignore[untyped-decorator]
def gather(
    touched: Int64Array,
    n_touched: int,
    acc: FloatArray,
    live: BoolArray,
    ids: Int64Array,
    allow: Int64Array,
    use_allow: bool,
    deny: Int64Array,
    use_deny: bool,
    out_slots: Int64Array,
    out_scores: FloatArray,
) -> int:  # pragma: no cover - compiled; run through the index's tests
    """Write the touched slots that are live, in ``allow`` (when used) and not in ``deny``
    (when used), with their sums, to the outputs; zero every touched slot of ``acc``; the
    number written."""
    m = 0
    for j in range(n_touched):
        s = touched[j]
        score = acc[s]
        acc[s] = 0.0
        if not live[s]:
            continue
        if use_allow and not _member(ids[s], allow):
            continue
        if use_deny and _member(ids[s], deny):
            continue
        out_slots[m] = s
        out_scores[m] = score
        m += 1
    return m


@numba.jit(**_JIT)  # type: ignore[untyped-decorator]
def _after(
    score_a: float, slot_a: int, score_b: float, slot_b: int, ids: Int64Array
) -> bool:  # pragma: no cover - compiled
    """Whether (score_a, slot_a) ranks after (score_b, slot_b): a lower score, or an equal
    one and a larger id (ids are read only on a tie)."""
    if score_a != score_b:
        return score_a < score_b
    later: bool = ids[slot_a] > ids[slot_b]
    return later


@numba.jit(**_JIT)  # type: ignore[untyped-decorator]
def _eligible(
    s: int,
    live: BoolArray,
    ids: Int64Array,
    allow: Int64Array,
    use_allow: bool,
    deny: Int64Array,
    use_deny: bool,
) -> bool:  # pragma: no cover - compiled
    if not live[s]:
        return False
    if use_allow and not _member(ids[s], allow):
        return False
    return not (use_deny and _member(ids[s], deny))


@numba.jit(**_JIT)  # type: ignore[untyped-decorator]
def _sift_down(
    heap: Int64Array, keys: FloatArray, n: int, c: int, slot: int, key: float, ids: Int64Array
) -> None:  # pragma: no cover - compiled
    """Place (key, slot) at or below position ``c`` of the min-heap ``heap[:n]`` (root: the
    entry ranked last)."""
    while True:
        left = 2 * c + 1
        if left >= n:
            break
        child = left
        right = left + 1
        if right < n and _after(keys[right], heap[right], keys[left], heap[left], ids):
            child = right
        if not _after(keys[child], heap[child], key, slot, ids):
            break
        heap[c] = heap[child]
        keys[c] = keys[child]
        c = child
    heap[c] = slot
    keys[c] = key


@numba.jit(**_JIT)  # type: ignore[untyped-decorator]
def select(
    touched: Int64Array,
    n_touched: int,
    acc: FloatArray,
    live: BoolArray,
    ids: Int64Array,
    allow: Int64Array,
    use_allow: bool,
    deny: Int64Array,
    use_deny: bool,
    k: int,
    out_slots: Int64Array,
    out_scores: FloatArray,
) -> int:  # pragma: no cover - compiled; run through the index's tests
    """The best ``k`` eligible touched slots (live, in ``allow`` when used, not in ``deny``
    when used) by (score desc, id asc), best first, into the outputs; zeroes every touched
    slot of ``acc``; the number written. Eligibility is checked only for a slot that would
    enter the heap, and ids are read only on ties: most slots cost one read of ``acc``."""
    heap = np.empty(max(k, 1), dtype=np.int64)
    keys = np.empty(max(k, 1), dtype=np.float64)
    n = 0
    for j in range(n_touched):
        s = touched[j]
        score = acc[s]
        acc[s] = 0.0
        if n == k and not _after(keys[0], heap[0], score, s, ids):
            continue  # no better than the entry ranked last: skip it unchecked
        if not _eligible(s, live, ids, allow, use_allow, deny, use_deny):
            continue
        if n < k:  # sift up
            c = n
            n += 1
            while c > 0:
                parent = (c - 1) // 2
                if not _after(score, s, keys[parent], heap[parent], ids):
                    break
                heap[c] = heap[parent]
                keys[c] = keys[parent]
                c = parent
            heap[c] = s
            keys[c] = score
        else:
            _sift_down(heap, keys, n, 0, s, score, ids)
    m = n
    while n > 0:  # pop the entry ranked last into the tail: the output runs best first
        out_slots[n - 1] = heap[0]
        out_scores[n - 1] = keys[0]
        n -= 1
        _sift_down(heap, keys, n, 0, heap[n], keys[n], ids)
    return m


class Scratch:
    """Per-index buffers of the compiled scorer, grown with the index's slots: the
    accumulator (zero between queries), the touched list and the gathered candidates.
    Not thread-safe: the owning index's lock guards it."""

    def __init__(self) -> None:
        self.acc: FloatArray = np.zeros(0, dtype=np.float64)
        self.touched: Int64Array = np.zeros(0, dtype=np.int64)
        self.slots: Int64Array = np.zeros(0, dtype=np.int64)
        self.scores: FloatArray = np.zeros(0, dtype=np.float64)

    def fit(self, n_slots: int) -> None:
        """Make room for ``n_slots`` slots (the accumulator stays all zero)."""
        if len(self.acc) >= n_slots:
            return
        size = max(n_slots, 2 * len(self.acc), 1024)
        self.acc = np.zeros(size, dtype=np.float64)
        # one more than the slots: ``accumulate`` writes a slot at the end of the touched list
        # before it knows whether the slot is new, so with every slot touched it writes one past
        self.touched = np.zeros(size + 1, dtype=np.int64)
        self.slots = np.zeros(size, dtype=np.int64)
        self.scores = np.zeros(size, dtype=np.float64)

    def reset(self) -> None:
        """After a failure between ``accumulate`` and ``gather``: zero the whole accumulator."""
        self.acc[:] = 0.0


def warm() -> None:
    """Compile (or load from numba's cache) every kernel now, on a tiny input, so that the
    first query after a start does not pay for it."""
    scratch = Scratch()
    scratch.fit(4)
    slots = np.array([0, 2], dtype=np.int32)
    tfs = np.array([1, 2], dtype=np.int32)
    dl = np.array([3, 1, 2, 1], dtype=np.int64)
    n = accumulate(slots, tfs, 1.0, dl, 0.3, 0.45, 2.2, scratch.acc, scratch.touched, 0)
    none = np.zeros(0, dtype=np.int64)
    live = np.ones(4, dtype=np.bool_)
    ids = np.arange(4, dtype=np.int64)
    gather(
        scratch.touched,
        n,
        scratch.acc,
        live,
        ids,
        none,
        False,
        none,
        False,
        scratch.slots,
        scratch.scores,
    )
    n = accumulate(slots, tfs, 1.0, dl, 0.3, 0.45, 2.2, scratch.acc, scratch.touched, 0)
    select(
        scratch.touched,
        n,
        scratch.acc,
        live,
        ids,
        none,
        False,
        none,
        False,
        1,
        scratch.slots,
        scratch.scores,
    )
