"""Keyword statistics: the numbers BM25 needs to score a document for a query, in a form
that travels, and the formula itself (one home for it: ``index.bm25_index`` scores the same).

A federated keyword or hybrid query (``node.pools``) ranks candidates from several nodes as
one node holding all of them would: each source states, for the asker's query terms, its
searched collections' document count, total length and document frequencies
(``TermStats``, summed over sources) and each candidate's length and term frequencies
(``DocTerms``); the asker scores them all with ``bm25_scores`` over the sums.

BM25 as SQLite FTS5's ``bm25()`` reports it::

    sum_t w_t * idf_t * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))

with ``idf_t = ln((N - df_t + 0.5) / (df_t + 0.5))`` floored at 1e-6, N the documents, dl a
document's token count, avgdl their mean, ``w_t`` the query term's weight; a term no document
holds contributes nothing. Invariant: ``bm25_scores`` evaluates the terms in the query's term
order with the index's exact floating-point steps, so equal statistics give equal scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: FTS5's BM25 parameters (``index.bm25_index.Bm25Options`` defaults to them).
BM25_K1 = 1.2
BM25_B = 0.75
#: The smallest idf a term gets (FTS5's floor for terms in over half the documents).
MIN_IDF = 1e-6

#: A query's terms with their weights, in the query's order (``KeywordIndex.query_terms``).
QueryTerms = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class TermStats:
    """Documents, their total token count, and per query term (in order) how many hold it."""

    docs: int
    length: int
    df: tuple[int, ...]

    def fault(self, terms: int) -> str | None:
        """Why these statistics cannot describe a corpus for a query of ``terms`` terms."""
        if len(self.df) != terms:
            return f"df must have one count per query term ({terms})"
        if self.docs < 0 or self.length < 0 or any(d < 0 or d > self.docs for d in self.df):
            return "statistics must be counts with each df at most the documents"
        return None


@dataclass(frozen=True, slots=True)
class DocTerms:
    """One document's token count and its frequency of each query term (in order)."""

    length: int
    tf: tuple[int, ...]

    def fault(self, terms: int) -> str | None:
        if len(self.tf) != terms:
            return f"tf must have one count per query term ({terms})"
        if any(t < 0 for t in self.tf) or sum(self.tf) > self.length:
            return "term frequencies must be counts within the document's length"
        return None


def total_stats(parts: Sequence[TermStats], terms: int) -> TermStats:
    """The statistics of the union of disjoint corpora."""
    df = [0] * terms
    for part in parts:
        for j, d in enumerate(part.df):
            df[j] += d
    return TermStats(sum(p.docs for p in parts), sum(p.length for p in parts), tuple(df))


def idf(docs: int, df: int) -> float:
    """The idf of a term that ``df`` of ``docs`` documents hold, floored at ``MIN_IDF``."""
    raw = math.log((docs - df + 0.5) / (df + 0.5))
    return raw if raw > 0.0 else MIN_IDF


def bm25_scores(
    weights: Sequence[int],
    stats: TermStats,
    docs: Sequence[DocTerms],
    k1: float = BM25_K1,
    b: float = BM25_B,
) -> list[float]:
    """BM25 of each document of ``docs`` for a query of these term ``weights`` over a corpus
    of ``stats`` (see the module docstring); 0.0 for a document holding no query term."""
    n = stats.docs
    if n <= 0:
        return [0.0] * len(docs)
    avgdl = stats.length / n if stats.length else 1.0
    c0, c1, k1p1 = k1 * (1.0 - b), k1 * b / avgdl, k1 + 1.0
    terms: list[tuple[int, float]] = []
    for j, (weight, df) in enumerate(zip(weights, stats.df, strict=True)):
        if df <= 0:
            continue
        terms.append((j, weight * idf(n, df)))
    out: list[float] = []
    for doc in docs:
        score = 0.0
        for j, wi in terms:
            tf = doc.tf[j]
            if tf:
                score += wi * float(tf) * k1p1 / (float(tf) + (c0 + c1 * doc.length))
        out.append(score)
    return out
