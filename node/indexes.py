"""The search caches beside the catalog: the vector index and the keyword index, kept together.

Both are rebuildable caches of the catalog's searchable facts (stored, not hidden, not erased):
every change that adds or removes a fact's vector also adds or removes its text, through this
one object, so the two never disagree about which ids exist for longer than one call. Both are
saved together (atomic file replaces, under the node's write lock; the keyword index also right
after an erasure, ``erase``) and reconciled with the
catalog at every start (``reconcile``: each against the catalog on its own, so a keyword index
that is missing, torn or from an older version is rebuilt while the vector index is kept).
Methods block (FAISS, numpy, SQLite): callers run them in worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from node.ports import FactRecords, Ids, KeywordIndex, VectorIndex, Vectors

log = logging.getLogger(__name__)

#: Facts read back from the catalog per step when an index is rebuilt.
RECONCILE_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class Reconciled:
    vectors_added: int
    vectors_removed: int
    keywords_added: int
    keywords_removed: int


class SearchIndexes:
    def __init__(self, vectors: VectorIndex, keywords: KeywordIndex) -> None:
        self.vectors = vectors
        self.keywords = keywords

    def add(self, ids: Ids, vectors: Vectors, texts: Sequence[str]) -> None:
        self.vectors.add(ids, vectors)
        self.keywords.add(ids, texts)

    def remove(self, ids: Ids) -> None:
        self.vectors.remove(ids)
        self.keywords.remove(ids)

    def erase(self, ids: Ids) -> None:
        """Remove erased (revoked) facts and save the keyword index at once, so that their
        words leave the disk now rather than at the next periodic save (the saved file holds
        only the live facts' terms). The vector index follows at its next save."""
        self.remove(ids)
        self.keywords.save()

    def save(self) -> None:
        self.vectors.save()
        self.keywords.save()

    def reconcile(self, catalog: FactRecords) -> Reconciled:
        """Make both indexes hold exactly the catalog's searchable ids."""
        want = catalog.ids()
        vectors = _sync(
            "vector", want, self.vectors, lambda c: self.vectors.add(c, catalog.vectors(c))
        )
        keywords = _sync(
            "keyword", want, self.keywords, lambda c: self.keywords.add(c, catalog.texts(c))
        )
        return Reconciled(*vectors, *keywords)


def _sync(
    name: str, want: Ids, index: VectorIndex | KeywordIndex, add: Callable[[Ids], None]
) -> tuple[int, int]:
    """Add ``want``'s ids that ``index`` lacks (``add`` reads them from the catalog a chunk at
    a time), remove those it holds beyond them, save if anything changed; (added, removed)."""
    have = index.ids()
    missing = np.setdiff1d(want, have, assume_unique=True)
    extra = np.setdiff1d(have, want, assume_unique=True)
    if len(extra):
        index.remove(extra)
    for start in range(0, len(missing), RECONCILE_CHUNK):
        add(missing[start : start + RECONCILE_CHUNK])
    if len(missing) or len(extra):
        log.info("%s index reconciled: added %d, removed %d", name, len(missing), len(extra))
        index.save()
    return len(missing), len(extra)
