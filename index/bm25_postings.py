"""The keyword index's store: its documents' slots, forward index, postings and the
statistics BM25 needs, in memory (``index.bm25_index`` owns one and scores queries over it).

What it owns
    One slot per document added since the store was built, live or tombstoned: its catalog
    row id, token count (``dl``), liveness, and its distinct terms with their frequencies
    (``fwd_off``/``fwd_terms``/``fwd_tf``, the forward index). Per term (numbered densely in
    first-seen order, ``vocab``/``terms``): its postings (slots and frequencies, in ``array``
    buffers that grow in place) and its live document frequency ``df``. Also the live ids'
    slots (``slot_of``) and the live documents' total token count.

Invariants
    - Each live id has exactly one live slot; ``remove`` tombstones it and at once lowers the
      df of each of its terms (from the forward index) and the total length, so the statistics
      always describe the live documents alone. Tombstoned slots stay in the postings until
      ``build`` makes a new store from ``live_forward`` (compaction).
    - A term's postings hold increasing slot numbers: slots are only ever appended.
    - Readers treat the attributes as read-only; only ``add``, ``remove`` and ``build`` change
      them. A numpy view of a postings buffer (``postings``) stays valid: a buffer that cannot
      grow while viewed is replaced by a grown copy.
    - Not thread-safe: the owning ``Bm25Index`` holds its lock around every call.
"""

from __future__ import annotations

import itertools
from array import array
from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt

from index.bm25_file import Forward, Int32Array


class Postings:
    """One keyword index's documents, postings and statistics; see the module docstring.
    Not thread-safe: its ``Bm25Index`` holds the lock."""

    def __init__(self) -> None:
        # per slot: one per document added since the last compaction, live or tombstoned
        self.n_slots = 0
        self.ids = np.zeros(0, dtype=np.int64)
        self.dl = np.zeros(0, dtype=np.int64)
        self.live = np.zeros(0, dtype=bool)
        self.fwd_off = np.zeros(1, dtype=np.int64)  # slot s: entries fwd_off[s]:fwd_off[s+1]
        self.fwd_terms: array[int] = array("i")
        self.fwd_tf: array[int] = array("i")
        self.slot_of: dict[int, int] = {}  # live id -> slot
        # per term
        self.vocab: dict[str, int] = {}
        self.terms: list[str] = []
        self.post_slots: list[array[int]] = []
        self.post_tf: list[array[int]] = []
        self.df: array[int] = array("i")  # live documents holding the term
        self.total_len = 0  # tokens in the live documents

    @classmethod
    def build(cls, forward: Forward) -> Postings:
        """A store of these live documents, one slot each in this order; it copies the arrays
        it keeps."""
        ids, fwd_off, fwd_terms, fwd_tf, terms = forward
        n, n_terms = len(ids), len(terms)
        cumulative = np.zeros(len(fwd_tf) + 1, dtype=np.int64)
        np.cumsum(fwd_tf, out=cumulative[1:])
        dl = cumulative[fwd_off[1:]] - cumulative[fwd_off[:-1]]
        order = np.argsort(fwd_terms, kind="stable")  # by term; slots stay ascending
        post_slots = np.repeat(np.arange(n, dtype=np.int32), np.diff(fwd_off))[order]
        post_tf = fwd_tf[order]
        del order
        df = np.bincount(fwd_terms, minlength=n_terms)
        bounds = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df, out=bounds[1:])
        edges = (4 * bounds).tolist()
        slot_bytes, tf_bytes = _bytes(post_slots), _bytes(post_tf)
        new = cls()
        new.n_slots = n
        new.ids = ids.astype(np.int64, copy=True)
        new.dl = dl
        new.live = np.ones(n, dtype=bool)
        new.fwd_off = fwd_off.astype(np.int64, copy=True)
        new.fwd_terms = _int_array(_bytes(fwd_terms))
        new.fwd_tf = _int_array(_bytes(fwd_tf))
        new.slot_of = {fact_id: slot for slot, fact_id in enumerate(ids.tolist())}
        new.terms = terms
        new.vocab = {term: t for t, term in enumerate(terms)}
        new.post_slots = [_int_array(slot_bytes[a:b]) for a, b in itertools.pairwise(edges)]
        new.post_tf = [_int_array(tf_bytes[a:b]) for a, b in itertools.pairwise(edges)]
        new.df = _int_array(_bytes(df.astype(np.int32)))
        new.total_len = int(dl.sum())
        return new

    @property
    def tombstones(self) -> int:
        return self.n_slots - len(self.slot_of)

    def add(self, ids: list[int], counted: list[Counter[str]]) -> None:
        """Append one slot per document (``counted``: its terms' frequencies), replacing the
        live ones with these ids."""
        self.remove([i for i in ids if i in self.slot_of])
        vocab = self.vocab
        term_ids: list[int] = []
        freqs: list[int] = []
        lengths: list[int] = []
        dls: list[int] = []
        for counts in counted:
            for term, tf in counts.items():
                t = vocab.get(term)
                if t is None:
                    t = vocab[term] = len(self.terms)
                    self.terms.append(term)
                    self.post_slots.append(array("i"))
                    self.post_tf.append(array("i"))
                    self.df.append(0)
                term_ids.append(t)
                freqs.append(tf)
            lengths.append(len(counts))
            dls.append(sum(counts.values()))
        first, n = self.n_slots, len(ids)
        self._reserve(first + n)
        slots = np.arange(first, first + n, dtype=np.int64)
        self.ids[first : first + n] = ids
        self.dl[first : first + n] = dls
        self.live[first : first + n] = True
        self.fwd_off[first + 1 : first + n + 1] = len(self.fwd_terms) + np.cumsum(lengths)
        self.fwd_terms.extend(term_ids)
        self.fwd_tf.extend(freqs)
        if term_ids:  # postings: (term, slot, tf) grouped by term, slots ascending
            terms = np.asarray(term_ids, dtype=np.int64)
            order = np.argsort(terms, kind="stable")
            post_slots = np.repeat(slots, lengths)[order].astype(np.int32)
            post_tf = np.asarray(freqs, dtype=np.int32)[order]
            grouped = terms[order]
            starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
            ends = np.r_[starts[1:], len(grouped)].tolist()
            slot_bytes, tf_bytes = post_slots.tobytes(), post_tf.tobytes()
            for t, a, b in zip(grouped[starts].tolist(), starts.tolist(), ends, strict=True):
                _extend(self.post_slots, t, slot_bytes[4 * a : 4 * b])
                _extend(self.post_tf, t, tf_bytes[4 * a : 4 * b])
                self.df[t] += b - a
        for fact_id, slot in zip(ids, slots.tolist(), strict=True):
            self.slot_of[fact_id] = slot
        self.n_slots += n
        self.total_len += sum(dls)

    def _reserve(self, slots: int) -> None:
        if slots <= len(self.ids):
            return
        size = max(slots, 2 * len(self.ids), 64)
        self.ids = _resized(self.ids, size)
        self.dl = _resized(self.dl, size)
        self.live = _resized(self.live, size)
        self.fwd_off = _resized(self.fwd_off, size + 1)

    def remove(self, ids: list[int]) -> int:
        """Tombstone the live ones of these ids; return how many there were."""
        removed = 0
        df = self.df
        for fact_id in ids:
            slot = self.slot_of.pop(fact_id, None)
            if slot is None:
                continue
            start, end = int(self.fwd_off[slot]), int(self.fwd_off[slot + 1])
            for t in self.fwd_terms[start:end]:
                df[t] -= 1
            self.live[slot] = False
            self.total_len -= int(self.dl[slot])
            removed += 1
        return removed

    def live_forward(self, by_id: bool) -> Forward:
        """The live documents in slot or id order, with the terms they use renumbered
        densely."""
        slots = np.flatnonzero(self.live[: self.n_slots])
        if by_id:
            slots = slots[np.argsort(self.ids[slots], kind="stable")]
        starts = self.fwd_off[slots]
        lengths = self.fwd_off[slots + 1] - starts
        fwd_off = np.zeros(len(slots) + 1, dtype=np.int64)
        np.cumsum(lengths, out=fwd_off[1:])
        gather = np.repeat(starts - fwd_off[:-1], lengths) + np.arange(int(fwd_off[-1]))
        fwd_terms = _view(self.fwd_terms)[gather]
        fwd_tf = _view(self.fwd_tf)[gather]
        used = np.zeros(len(self.terms), dtype=bool)
        used[fwd_terms] = True
        renumber = (np.cumsum(used) - 1).astype(np.int32)
        terms = [self.terms[t] for t in np.flatnonzero(used).tolist()]
        return Forward(self.ids[slots].copy(), fwd_off, renumber[fwd_terms], fwd_tf, terms)

    def postings(self, t: int) -> tuple[Int32Array, Int32Array]:
        """Term ``t``'s postings: its slots (ascending) and frequencies, as views."""
        return _view(self.post_slots[t]), _view(self.post_tf[t])


def _resized(arr: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    out = np.zeros(size, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


def _extend(arrays: list[array[int]], t: int, data: bytes) -> None:
    try:
        arrays[t].frombytes(data)
    except BufferError:  # a numpy view of it is still alive somewhere: grow a copy instead
        arrays[t] = array("i", arrays[t])
        arrays[t].frombytes(data)


def _bytes(arr: npt.NDArray[Any]) -> memoryview:
    """A contiguous array's bytes, without a copy."""
    contiguous: Any = np.ascontiguousarray(arr)
    return memoryview(contiguous).cast("B")


def _int_array(data: memoryview) -> array[int]:
    out = array("i")
    out.frombytes(data)
    return out


def _view(arr: array[int]) -> Int32Array:
    if not arr:
        return np.zeros(0, dtype=np.int32)
    return np.frombuffer(arr, dtype=np.int32)
