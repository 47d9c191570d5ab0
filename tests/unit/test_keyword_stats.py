"""node.keyword_stats: the statistics' checks, their sum over corpora, and the BM25 formula."""

from __future__ import annotations

import math

import pytest

from node.keyword_stats import (
    BM25_B,
    BM25_K1,
    MIN_IDF,
    DocTerms,
    TermStats,
    bm25_scores,
    total_stats,
)


def test_term_stats_fault() -> None:
    assert TermStats(3, 10, (0, 3)).fault(2) is None
    assert TermStats(0, 0, ()).fault(0) is None
    assert TermStats(3, 10, (1,)).fault(2) is not None  # one df per term
    assert TermStats(3, 10, (1, 2, 0)).fault(2) is not None
    assert TermStats(-1, 10, ()).fault(0) is not None
    assert TermStats(3, -1, ()).fault(0) is not None
    assert TermStats(3, 10, (4,)).fault(1) is not None  # more holders than documents
    assert TermStats(3, 10, (-1,)).fault(1) is not None


def test_doc_terms_fault() -> None:
    assert DocTerms(5, (2, 3)).fault(2) is None
    assert DocTerms(0, ()).fault(0) is None
    assert DocTerms(5, (2,)).fault(2) is not None
    assert DocTerms(5, (-1, 0)).fault(2) is not None
    assert DocTerms(4, (2, 3)).fault(2) is not None  # more occurrences than tokens


def test_total_stats_sums_disjoint_corpora() -> None:
    parts = [TermStats(3, 10, (1, 0)), TermStats(2, 7, (2, 1)), TermStats(0, 0, (0, 0))]
    assert total_stats(parts, 2) == TermStats(5, 17, (3, 1))
    assert total_stats([], 2) == TermStats(0, 0, (0, 0))


def test_bm25_by_hand() -> None:
    # 4 documents of 20 tokens in all; "a" in 1, "b" in 3 (idf < 0: floored), weights 2 and 1
    stats = TermStats(4, 20, (1, 3))
    doc = DocTerms(6, (2, 1))
    k1, b, avgdl = 1.2, 0.75, 5.0
    norm = k1 * (1 - b + b * 6 / avgdl)
    idf_a = math.log((4 - 1 + 0.5) / (1 + 0.5))
    idf_b = MIN_IDF
    assert math.log((4 - 3 + 0.5) / (3 + 0.5)) < 0
    want = 2 * idf_a * 2 * (k1 + 1) / (2 + norm) + 1 * idf_b * 1 * (k1 + 1) / (1 + norm)
    (got,) = bm25_scores([2, 1], stats, [doc])
    assert got == pytest.approx(want, rel=1e-12)
    assert got == pytest.approx(2.20598352, abs=1e-8)  # 2 * 0.84730 * 2 * 2.2 / 3.38 + ~0
    assert (k1, b) == (BM25_K1, BM25_B)


def test_parameters_change_the_score() -> None:
    stats = TermStats(4, 20, (1,))
    doc = DocTerms(10, (3,))
    norm = 2.0 * (1 - 0.5 + 0.5 * 10 / 5.0)
    want = math.log(3.5 / 1.5) * 3 * 3.0 / (3 + norm)
    assert bm25_scores([1], stats, [doc], k1=2.0, b=0.5)[0] == pytest.approx(want, rel=1e-12)


def test_terms_no_document_holds_contribute_nothing() -> None:
    stats = TermStats(4, 20, (0, 1))
    with_ghost = bm25_scores([1, 1], stats, [DocTerms(5, (0, 1)), DocTerms(5, (0, 0))])
    alone = bm25_scores([1], TermStats(4, 20, (1,)), [DocTerms(5, (1,)), DocTerms(5, (0,))])
    assert with_ghost == alone and alone[0] > 0 and alone[1] == 0.0
    # a df of 0 is skipped even where a (foreign) document claims the term
    assert bm25_scores([1], TermStats(4, 20, (0,)), [DocTerms(5, (2,))]) == [0.0]


def test_zero_documents_and_no_terms_score_zero() -> None:
    docs = [DocTerms(3, (1,)), DocTerms(0, (0,))]
    assert bm25_scores([1], TermStats(0, 0, (0,)), docs) == [0.0, 0.0]
    assert bm25_scores([], TermStats(5, 9, ()), [DocTerms(3, ())]) == [0.0]
    assert bm25_scores([1], TermStats(2, 5, (1,)), []) == []


def test_empty_corpus_length_means_unit_mean_length() -> None:
    # documents all of length 0 (a corpus of empty texts): avgdl is taken as 1
    (got,) = bm25_scores([1], TermStats(3, 0, (1,)), [DocTerms(1, (1,))])
    norm = 1.2 * (1 - 0.75 + 0.75 * 1 / 1.0)
    assert got == pytest.approx(math.log(2.5 / 1.5) * 2.2 / (1 + norm), rel=1e-12)


def test_weights_and_terms_must_pair() -> None:
    with pytest.raises(ValueError):
        bm25_scores([1, 1], TermStats(3, 9, (1,)), [DocTerms(3, (1,))])
