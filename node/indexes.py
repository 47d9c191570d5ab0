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
from collections.abc import Sequence
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
        v_missing, v_extra = _difference(want, self.vectors.ids())
        if len(v_extra):
            self.vectors.remove(v_extra)
        for chunk in _chunks(v_missing):
            self.vectors.add(chunk, catalog.vectors(chunk))
        k_missing, k_extra = _difference(want, self.keywords.ids())
        if len(k_extra):
            self.keywords.remove(k_extra)
        for chunk in _chunks(k_missing):
            self.keywords.add(chunk, catalog.texts(chunk))
        done = Reconciled(len(v_missing), len(v_extra), len(k_missing), len(k_extra))
        if len(v_missing) or len(v_extra):
            log.info(
                "vector index reconciled: added %d, removed %d", *(len(v_missing), len(v_extra))
            )
            self.vectors.save()
        if len(k_missing) or len(k_extra):
            log.info(
                "keyword index reconciled: added %d, removed %d", *(len(k_missing), len(k_extra))
            )
            self.keywords.save()
        return done


def _difference(want: Ids, have: Ids) -> tuple[Ids, Ids]:
    """(ids to add, ids to remove) to go from ``have`` to ``want``."""
    return (
        np.setdiff1d(want, have, assume_unique=True),
        np.setdiff1d(have, want, assume_unique=True),
    )


def _chunks(ids: Ids) -> list[Ids]:
    return [ids[i : i + RECONCILE_CHUNK] for i in range(0, len(ids), RECONCILE_CHUNK)]
