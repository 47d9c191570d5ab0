"""In-memory BM25 keyword index keyed by catalog row id, persisted atomically beside the vector
index: a rebuildable cache of the catalog's searchable facts, like ``index.faiss_index``.

What it owns
    The public face (``Bm25Index``, ``Bm25Options``), one lock, the query scorer
    (``_ranked``, ``_best``) and the statistics handed out for scoring elsewhere
    (``query_terms``, ``term_stats``, ``doc_terms``, ``text_terms``: ``node.keyword_stats``'s
    types, for a federated query that ranks several nodes' candidates together) over a
    ``Postings`` store (``index.bm25_postings``): each
    indexed fact's terms and their frequencies (a forward index), the inverted postings derived
    from them, and the statistics BM25 needs: live document count, total length, each term's
    live document frequency. It holds no text. Text becomes terms in ``index.bm25_tokens``
    (FTS5's ``porter unicode61 remove_diacritics 2``, ``index.keywords.fts_query``'s query
    words); the file format is ``index.bm25_file``'s. The catalog is the source of truth: a
    missing, torn, corrupt or outdated file means "rebuild from the catalog" (``open`` returns
    an empty index and says so), never a wrong answer.

Scoring: exactly SQLite FTS5's ``bm25()`` as ``SqliteCatalog.keyword_search`` reports it
    ``sum_t w_t * idf_t * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`` with
    ``idf_t = ln((N - df_t + 0.5) / (df_t + 0.5))`` floored at 1e-6, N the live documents, dl a
    document's token count (stopwords included), avgdl the live mean, ``w_t`` the weight
    ``index.bm25_tokens.query_terms`` gives term ``t``. It is ``node.keyword_stats``'s formula
    (``Bm25Options`` defaults to its k1 and b) in the same floating-point steps and term order:
    ``bm25_scores`` over ``query_terms``, ``term_stats`` and ``doc_terms`` gives a held
    document exactly its ``search`` score.

Top-k
    Term at a time over the query terms' postings, compiled (``index.bm25_kernel``): each
    posting's contribution is added to a per-slot accumulator reused across queries (the slots
    touched first are noted), then one pass over the touched slots keeps the best k in a heap,
    ordered by (score desc, id asc) like FTS5's ``ORDER BY bm25, rowid``, checking liveness
    and filters only for a slot that would enter the heap. Only the query terms' postings are
    read, each once; nothing else is scanned. (MaxScore was measured: on SciFact claims,
    k = 100, even an exact threshold lets it skip only the one or two most common terms, and
    probing candidates costs more than that saves. The numpy version of the same arithmetic,
    one ``bincount`` over all the postings and a partition of the candidates, was 3-4x slower
    at a million facts.)

Filters act inside the ranking, never by trimming it
    ``allowed`` / ``excluded`` id arrays (or sets) drop candidates before the top k is chosen,
    so k hits come back whenever k allowed documents match; a short ``allowed`` array (see
    ``DIRECT_FILTER_LIMIT``) is scored directly instead, by a binary search per query term.
    A predicate ``Callable[[int], bool]`` is tried in rank order over a window of k candidates
    that widens (x4) until k pass or the candidates run out.

Invariants
    - Ids are catalog row ids (int64) and each live id is indexed once: ``add`` of a live id
      replaces it. ``remove`` tombstones the slot and at once updates N, the total length and
      the df of each of its terms (from the forward index), so scores always equal a fresh
      build over the live documents. Tombstones are compacted away past ``compact_fraction``.
    - A term's postings hold increasing slot numbers; slots are appended, and only a
      compaction renumbers them (in order), by building a new ``Postings`` that replaces the
      old one whole.
    - ``save`` writes the live documents sorted by id; ``load`` derives postings, df and
      lengths from the forward index the file holds: a file loads whole or raises
      ``CorruptIndex`` (see ``index.bm25_file``).
    - Every public method that reads the store holds the lock (``query_terms`` and
      ``text_terms`` read only their text); results never alias internal buffers.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index import bm25_file, bm25_kernel
from index.bm25_file import CorruptIndex, IntArray
from index.bm25_postings import Postings
from index.bm25_tokens import query_terms, tokenize
from node.keyword_stats import BM25_B, BM25_K1, DocTerms, QueryTerms, TermStats, idf
from node.search import Hit

__all__ = [
    "ADD_CHUNK",
    "DIRECT_FILTER_LIMIT",
    "Bm25Index",
    "Bm25Options",
    "CorruptIndex",
    "IdFilter",
]

log = logging.getLogger(__name__)

#: An ``allowed`` array at most this long, and at most an eighth of the query's postings, is
#: scored directly instead of filtering the candidates of a full search (measured crossover at
#: 100k facts: ~1,500 allowed ids on SciFact claims).
DIRECT_FILTER_LIMIT = 1024
#: Documents tokenized per step of ``add``.
ADD_CHUNK = 4096

#: Catalog row ids (an array or any collection), or a predicate on one row id.
IdFilter = npt.NDArray[np.integer[Any]] | Collection[int] | Callable[[int], bool]
FloatArray = npt.NDArray[np.float64]
_NO_IDS: IntArray = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Bm25Options:
    """BM25's parameters (FTS5's values by default) and when to compact tombstones."""

    k1: float = BM25_K1
    b: float = BM25_B
    #: Compact when tombstoned slots exceed this fraction of all slots.
    compact_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not (math.isfinite(self.k1) and self.k1 >= 0.0):
            raise ValueError(f"k1 must be finite and >= 0, got {self.k1}")
        if not 0.0 <= self.b <= 1.0:
            raise ValueError(f"b must be in [0, 1], got {self.b}")
        if not 0.0 < self.compact_fraction <= 1.0:
            raise ValueError(f"compact_fraction must be in (0, 1], got {self.compact_fraction}")


class Bm25Index:
    """BM25 top-k over catalog row ids; see the module docstring for its invariants."""

    def __init__(self, options: Bm25Options | None = None, path: Path | str | None = None) -> None:
        self.options = options or Bm25Options()
        #: Where ``save()`` writes when given no path (set by ``open`` and ``load`` too).
        self.path = None if path is None else Path(path)
        self._lock = threading.RLock()
        self._postings = Postings()
        self._scratch = bm25_kernel.Scratch()  # the compiled scorer's buffers, under the lock

    # -- size and ids ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._postings.slot_of)

    def __contains__(self, fact_id: object) -> bool:
        return fact_id in self._postings.slot_of

    def ids(self) -> IntArray:
        """The live ids, ascending."""
        with self._lock:
            slot_of = self._postings.slot_of
            live = np.fromiter(slot_of, dtype=np.int64, count=len(slot_of))
        live.sort()
        return live

    @property
    def tombstones(self) -> int:
        return self._postings.tombstones

    # -- writes ------------------------------------------------------------------------------

    def add(self, ids: Sequence[int] | IntArray, texts: Sequence[str]) -> None:
        """Index ``texts[i]`` under ``ids[i]``; an id already present is replaced.

        Texts are tokenized outside the lock, ``ADD_CHUNK`` at a time (bounding the memory a
        bulk rebuild needs); a search running meanwhile sees whole chunks, never half a
        document."""
        id_list = [int(i) for i in ids]
        if len(id_list) != len(texts):
            raise ValueError(f"{len(id_list)} ids but {len(texts)} texts")
        if len(set(id_list)) != len(id_list):
            raise ValueError("duplicate ids in one add")
        for start in range(0, len(id_list), ADD_CHUNK):
            chunk = id_list[start : start + ADD_CHUNK]
            counted = [Counter(tokenize(text)) for text in texts[start : start + ADD_CHUNK]]
            with self._lock:
                self._postings.add(chunk, counted)
        with self._lock:  # replaced documents leave tombstones too
            self._maybe_compact()

    def remove(self, ids: Iterable[int] | IntArray) -> int:
        """Remove the ids that are present (others are ignored); return how many were."""
        with self._lock:
            removed = self._postings.remove([int(i) for i in ids])
            self._maybe_compact()
            return removed

    def _maybe_compact(self) -> None:
        postings = self._postings
        if postings.tombstones > self.options.compact_fraction * postings.n_slots:
            self.compact()

    def compact(self) -> None:
        """Drop tombstoned slots and unused terms, renumbering slots in order."""
        with self._lock:
            if self._postings.tombstones:
                self._postings = Postings.build(self._postings.live_forward(by_id=False))

    # -- search ------------------------------------------------------------------------------

    def search(
        self,
        text: str,
        k: int,
        allowed: IdFilter | None = None,
        excluded: IdFilter | None = None,
    ) -> list[Hit]:
        """The ``k`` best live documents for ``text`` by BM25, (score desc, id asc).

        ``allowed``: only these ids, or the ids a predicate accepts; ``excluded``: never these.
        Both act inside the ranking: k hits come back whenever k such documents match.
        """
        if k <= 0:
            return []
        weights = query_terms(text)
        if not weights:
            return []
        accept: list[Callable[[int], bool]] = []
        allow: IntArray | None = None
        deny: IntArray | None = None
        if callable(allowed):
            accept.append(allowed)
        elif allowed is not None:
            allow = _sorted_ids(allowed)
            if len(allow) == 0:
                return []
        if callable(excluded):
            reject = excluded
            accept.append(lambda i: not reject(i))
        elif excluded is not None:
            deny = _sorted_ids(excluded)
            if len(deny) == 0:
                deny = None
        with self._lock:
            postings = self._postings
            if not postings.slot_of:
                return []
            return _ranked(postings, self.options, weights, allow, deny, k, accept, self._scratch)

    # -- statistics for scoring elsewhere (node.keyword_stats) -------------------------------

    def query_terms(self, text: str) -> QueryTerms:
        """The query's terms and weights in the order ``search`` scores them."""
        return tuple(query_terms(text).items())

    def term_stats(
        self,
        terms: Sequence[str],
        allowed: npt.NDArray[np.integer[Any]] | Collection[int] | None = None,
    ) -> TermStats:
        """Live documents (those among ``allowed`` when given), their total length and each
        term's document frequency among them: with ``allowed`` None, what ``search`` uses."""
        allow = None if allowed is None else _sorted_ids(allowed)
        with self._lock:
            p = self._postings
            if allow is None:
                return TermStats(len(p.slot_of), p.total_len, tuple(_df(p, t) for t in terms))
            return _stats_among(p, terms, _live_mask(p, allow))

    def doc_terms(
        self, terms: Sequence[str], ids: Iterable[int] | IntArray
    ) -> list[DocTerms | None]:
        """Each live document's length and frequency of each term (from the forward index);
        None for an id not held."""
        id_list = [int(i) for i in ids]
        with self._lock:
            p = self._postings
            wanted = [p.vocab.get(term) for term in terms]
            return [_doc_terms(p, p.slot_of.get(i), wanted) for i in id_list]

    def text_terms(self, terms: Sequence[str], texts: Sequence[str]) -> list[DocTerms]:
        """The same for texts, tokenized as ``add`` tokenizes documents."""
        out = []
        for text in texts:
            tokens = tokenize(text)
            counts = Counter(tokens)
            out.append(DocTerms(len(tokens), tuple(counts[term] for term in terms)))
        return out

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: Path | str | None = None) -> None:
        """Write the live documents to ``path`` (default: ``self.path``; neither: a no-op, as
        for an in-memory index), atomically and durably."""
        if path is None:
            if self.path is None:
                return
            path = self.path
        path = Path(path)
        with self._lock:
            forward = self._postings.live_forward(by_id=True)
        bm25_file.write(path, forward)
        log.debug("keyword index saved to %s (%d documents)", path, len(forward.ids))

    @classmethod
    def load(cls, path: Path | str, options: Bm25Options | None = None) -> Bm25Index:
        """The index saved at ``path``; ``CorruptIndex`` when the file is missing, torn,
        corrupt, or of another format or tokenizer version."""
        path = Path(path)
        postings = Postings.build(bm25_file.read(path))
        index = cls(options, path)
        index._postings = postings
        return index

    @classmethod
    def open(cls, path: Path | str, options: Bm25Options | None = None) -> tuple[Bm25Index, bool]:
        """``(index, loaded)``: the index saved at ``path``, or an empty one (``loaded``
        False; logged unless the file is simply absent) that the caller fills from the
        catalog. Either way the compiled scorer is ready (``bm25_kernel.warm``): the first
        query after a start does not wait for numba."""
        bm25_kernel.warm()
        if not Path(path).exists():
            return cls(options, path), False
        try:
            return cls.load(path, options), True
        except CorruptIndex as exc:
            log.warning("%s; rebuilding it from the catalog", exc.message)
            return cls(options, path), False


# -- the query scorer --------------------------------------------------------------------------


def _ranked(
    p: Postings,
    options: Bm25Options,
    weights: dict[str, int],
    allow: IntArray | None,
    deny: IntArray | None,
    k: int,
    accept: list[Callable[[int], bool]],
    scratch: bm25_kernel.Scratch,
) -> list[Hit]:
    """The k best eligible live documents matching any query term (``search``'s answer)."""
    k1, b = options.k1, options.b
    n_live = len(p.slot_of)
    avgdl = p.total_len / n_live if p.total_len else 1.0
    c0, c1, k1p1 = k1 * (1.0 - b), k1 * b / avgdl, k1 + 1.0
    terms: list[tuple[float, int]] = []  # (weight * idf, term)
    for term, weight in weights.items():
        t = p.vocab.get(term)
        if t is None or p.df[t] <= 0:
            continue
        terms.append((weight * idf(n_live, p.df[t]), t))
    if not terms:
        return []
    dl = p.dl
    if allow is not None and _direct(len(allow), sum(p.df[t] for _, t in terms)):
        # few allowed documents: score exactly those, a binary search per term
        slot_of = p.slot_of
        found = np.fromiter((slot_of.get(i, -1) for i in allow.tolist()), dtype=np.int64)
        cand = np.sort(found[found >= 0])
        if deny is not None:
            cand = cand[~_member(p.ids[cand], deny)]
        scores = np.zeros(len(cand), dtype=np.float64)
        for wi, t in terms:
            posting, post_tf = p.postings(t)
            pos = np.searchsorted(posting, cand)
            pos[pos == len(posting)] = 0
            hit = posting[pos] == cand
            tf = post_tf[pos[hit]].astype(np.float64)
            scores[hit] += wi * tf * k1p1 / (tf + (c0 + c1 * dl[cand[hit]]))
        matched = scores > 0.0
        return _best(p, cand[matched], scores[matched], k, accept)
    # term at a time, compiled (index.bm25_kernel): each posting read once into a reused
    # accumulator; then one pass over the touched slots picks the best k (or, for
    # predicates, gathers them all for ``_best``'s windows)
    scratch.fit(p.n_slots)
    filters = (
        _NO_IDS if allow is None else allow,
        allow is not None,
        _NO_IDS if deny is None else deny,
        deny is not None,
    )
    n = 0
    try:
        for wi, t in terms:
            slots, post_tf = p.postings(t)
            n = bm25_kernel.accumulate(
                slots, post_tf, wi, dl, c0, c1, k1p1, scratch.acc, scratch.touched, n
            )
        if accept:
            m = bm25_kernel.gather(
                scratch.touched,
                n,
                scratch.acc,
                p.live,
                p.ids,
                *filters,
                scratch.slots,
                scratch.scores,
            )
        else:
            m = bm25_kernel.select(
                scratch.touched,
                n,
                scratch.acc,
                p.live,
                p.ids,
                *filters,
                k,
                scratch.slots,
                scratch.scores,
            )
    except BaseException:
        scratch.reset()
        raise
    if accept:
        return _best(p, scratch.slots[:m], scratch.scores[:m], k, accept)
    ids = p.ids[scratch.slots[:m]].tolist()
    return [Hit(i, score) for i, score in zip(ids, scratch.scores[:m].tolist(), strict=True)]


def _best(
    p: Postings,
    cand: IntArray,
    scores: FloatArray,
    k: int,
    accept: list[Callable[[int], bool]],
) -> list[Hit]:
    """The first k candidates by (score desc, id asc) that every predicate accepts: a window
    of k, then 4x wider windows further down while predicates reject some."""
    out: list[Hit] = []
    window = k
    rest: npt.NDArray[np.bool_] | None = None  # what the last window left, kept lazily
    while len(out) < k:
        if rest is not None:  # only when predicates rejected some: most queries never pay
            cand, scores = cand[rest], scores[rest]
        if not len(cand):
            break
        if len(cand) > window:
            kth = np.partition(scores, len(scores) - window)[len(scores) - window]
            top = scores >= kth  # ties at the boundary come along: windows never split them
            now, now_scores, rest = cand[top], scores[top], ~top
        else:
            now, now_scores = cand, scores
            rest = np.zeros(len(cand), dtype=bool)
        ids = p.ids[now]
        for j in np.lexsort((ids, -now_scores)).tolist():
            fact_id = int(ids[j])
            if all(check(fact_id) for check in accept):
                out.append(Hit(fact_id, float(now_scores[j])))
                if len(out) == k:
                    break
        window *= 4
    return out


def _df(p: Postings, term: str) -> int:
    t = p.vocab.get(term)
    return 0 if t is None else p.df[t]


def _live_mask(p: Postings, allow: IntArray) -> npt.NDArray[np.bool_]:
    """Per slot, whether it is live and its id is in ``allow`` (sorted, unique)."""
    live = p.live[: p.n_slots]
    if not len(allow):
        return np.zeros(len(live), dtype=bool)
    mask: npt.NDArray[np.bool_] = live & _member(p.ids[: p.n_slots], allow)
    return mask


def _stats_among(p: Postings, terms: Sequence[str], mask: npt.NDArray[np.bool_]) -> TermStats:
    """The statistics of the slots ``mask`` selects (live ones only)."""
    df = []
    for term in terms:
        t = p.vocab.get(term)
        df.append(0 if t is None else int(np.count_nonzero(mask[p.postings(t)[0]])))
    length = int(p.dl[: p.n_slots][mask].sum())
    return TermStats(int(np.count_nonzero(mask)), length, tuple(df))


def _doc_terms(p: Postings, slot: int | None, wanted: list[int | None]) -> DocTerms | None:
    """Slot ``slot``'s length and frequency of each wanted term (None: not in the vocabulary)."""
    if slot is None:
        return None
    start, end = int(p.fwd_off[slot]), int(p.fwd_off[slot + 1])
    tf = dict(zip(p.fwd_terms[start:end], p.fwd_tf[start:end], strict=True))
    return DocTerms(int(p.dl[slot]), tuple(0 if t is None else tf.get(t, 0) for t in wanted))


def _direct(allowed: int, postings: int) -> bool:
    """Whether to score the allowed documents directly rather than filter the candidates."""
    return allowed <= DIRECT_FILTER_LIMIT and 8 * allowed <= postings


def _sorted_ids(ids: npt.NDArray[np.integer[Any]] | Collection[int]) -> IntArray:
    """Sorted unique int64 ids."""
    if isinstance(ids, np.ndarray):
        arr = ids.astype(np.int64, copy=False).ravel()
    else:
        arr = np.fromiter((int(i) for i in ids), dtype=np.int64, count=len(ids))
    if len(arr) > 1 and not bool(np.all(arr[1:] > arr[:-1])):
        arr = np.sort(arr)  # then drop repeats: several times faster than np.unique
        arr = arr[np.concatenate(([True], arr[1:] != arr[:-1]))]
    return arr


def _member(values: IntArray, sorted_ids: IntArray) -> npt.NDArray[np.bool_]:
    """Whether each value is in ``sorted_ids`` (sorted, unique, not empty)."""
    pos = np.searchsorted(sorted_ids, values)
    pos[pos == len(sorted_ids)] = 0
    found: npt.NDArray[np.bool_] = sorted_ids[pos] == values
    return found
