"""The same assertions against the in-memory fake and the real top-k BM25 index.

The fake has no stemmer and no stopwords, so the texts here use words that the real
tokenizer (FTS5's unicode61 + porter, index.bm25_tokens) keeps as they are."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from index.bm25_index import Bm25Index
from node.keyword_stats import DocTerms, TermStats, bm25_scores
from node.memory import MemoryKeywordIndex
from node.ports import KeywordIndex

Factory = Callable[[Path], KeywordIndex]

FACTORIES: dict[str, Factory] = {
    "memory": lambda p: MemoryKeywordIndex(),
    "bm25": lambda p: Bm25Index(path=p / "keywords.bm25"),
}

TEXTS = {
    10: "red fish blue fish",
    11: "red sun",
    12: "blue moon over a red sea",
    13: "green frog",
    14: "fish soup with red pepper and fish bones",
    15: "moon",
}


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest) -> Factory:
    return FACTORIES[request.param]


def filled(make: Factory, tmp_path: Path) -> KeywordIndex:
    index = make(tmp_path)
    index.add(np.array(list(TEXTS), dtype=np.int64), list(TEXTS.values()))
    return index


def test_bm25_ranking_and_scores(make: Factory, tmp_path: Path) -> None:
    index = filled(make, tmp_path)
    assert len(index) == 6 and index.ids().tolist() == sorted(TEXTS)
    hits = index.search("fish", 10)
    assert [h.id for h in hits] == [10, 14]  # same tf 2; the shorter text ranks first
    assert hits[0].score > hits[1].score > 0
    both = index.search("red fish", 3)
    assert [h.id for h in both] == [10, 14, 11]
    assert index.search("frog", 5)[0].id == 13
    assert index.search("unicorn", 5) == [] and index.search("   ", 5) == []


def test_scores_agree_between_adapters(tmp_path: Path) -> None:
    got = {}
    for name, make in FACTORIES.items():
        index = filled(make, tmp_path / name)
        got[name] = [(h.id, round(h.score, 9)) for h in index.search("red moon fish", 6)]
    assert got["memory"] == got["bm25"]


def test_remove_replace_and_restrict(make: Factory, tmp_path: Path) -> None:
    index = filled(make, tmp_path)
    assert index.remove(np.array([10, 99], dtype=np.int64)) == 1
    assert [h.id for h in index.search("fish", 5)] == [14]
    index.add(np.array([11], dtype=np.int64), ["fish pond"])  # replaces id 11's text
    assert len(index) == 5
    assert {h.id for h in index.search("fish", 5)} == {11, 14}
    assert index.search("sun", 5) == []
    allowed = np.array([12, 14], dtype=np.int64)
    assert {h.id for h in index.search("red", 5, allowed=allowed)} == {12, 14}
    excluded = np.array([14], dtype=np.int64)
    assert [h.id for h in index.search("fish", 5, excluded=excluded)] == [11]
    assert index.search("red", 5, allowed=np.array([], dtype=np.int64)) == []


def test_k_hits_come_back_whatever_the_restriction(make: Factory, tmp_path: Path) -> None:
    index = make(tmp_path)
    n = 300
    index.add(np.arange(n, dtype=np.int64), [f"apple {'pear ' * (i % 7)}" for i in range(n)])
    allowed = np.arange(0, n, 3, dtype=np.int64)
    excluded = np.arange(0, n, 2, dtype=np.int64)
    hits = index.search("apple", 20, allowed=allowed, excluded=excluded)
    assert len(hits) == 20
    assert all(h.id % 3 == 0 and h.id % 2 == 1 for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def scores_from_stats(index: KeywordIndex, text: str, ids: list[int]) -> list[float]:
    query = index.query_terms(text)
    terms = [term for term, _ in query]
    docs = index.doc_terms(terms, np.array(ids, dtype=np.int64))
    assert all(d is not None for d in docs)
    held = [d for d in docs if d is not None]
    return bm25_scores([w for _, w in query], index.term_stats(terms), held)


@pytest.mark.parametrize("text", ["red fish", "red moon fish", "fish fish soup", "blue sun"])
def test_scores_from_statistics_equal_search_scores(
    make: Factory, tmp_path: Path, text: str
) -> None:
    index = filled(make, tmp_path)
    hits = {h.id: h.score for h in index.search(text, 10)}
    ids = sorted(TEXTS)
    assert scores_from_stats(index, text, ids) == [hits.get(i, 0.0) for i in ids]


def test_restricted_search_scores_with_the_whole_index_statistics(
    make: Factory, tmp_path: Path
) -> None:
    index = filled(make, tmp_path)
    allowed = np.array([12, 14], dtype=np.int64)
    hits = {h.id: h.score for h in index.search("red fish", 10, allowed=allowed)}
    assert scores_from_stats(index, "red fish", [12, 14]) == [hits[12], hits[14]]


def test_text_terms_of_a_held_text_equal_its_doc_terms(make: Factory, tmp_path: Path) -> None:
    index = filled(make, tmp_path)
    terms = [term for term, _ in index.query_terms("red fish moon unicorn")]
    assert len(terms) == 4
    ids = sorted(TEXTS)
    held = index.doc_terms(terms, np.array(ids, dtype=np.int64))
    assert index.text_terms(terms, [TEXTS[i] for i in ids]) == held
    assert held[0] == DocTerms(4, (1, 2, 0, 0))  # "red fish blue fish"
    outside = index.text_terms(terms, ["a red fish swims", "green frog", ""])
    assert [d.tf for d in outside] == [(1, 1, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0)]
    assert outside[0].length == 4 and outside[2].length == 0


def test_term_stats_of_a_subset_equal_an_index_of_that_subset(
    make: Factory, tmp_path: Path
) -> None:
    index = filled(make, tmp_path)
    terms = [term for term, _ in index.query_terms("red fish moon frog")]
    subset = [14, 10, 15]  # any order
    alone = make(tmp_path / "subset")
    alone.add(np.array(subset, dtype=np.int64), [TEXTS[i] for i in subset])
    allowed = np.array([*subset, 99, 15], dtype=np.int64)  # 99 is not held
    got = index.term_stats(terms, allowed)
    assert got == alone.term_stats(terms) == TermStats(3, 13, (2, 2, 1, 0))
    assert index.term_stats(terms, np.array([99], dtype=np.int64)) == TermStats(0, 0, (0,) * 4)
    assert index.term_stats(terms, np.array([], dtype=np.int64)) == TermStats(0, 0, (0,) * 4)
    whole = index.term_stats(terms, np.array(sorted(TEXTS), dtype=np.int64))
    assert whole == index.term_stats(terms) == TermStats(6, 23, (4, 2, 2, 1))


def test_unknown_ids_and_empty_queries(make: Factory, tmp_path: Path) -> None:
    index = filled(make, tmp_path)
    terms = [term for term, _ in index.query_terms("fish")]
    got = index.doc_terms(terms, np.array([99, 10, -1], dtype=np.int64))
    assert got == [None, DocTerms(4, (2,)), None]
    assert index.doc_terms(terms, np.array([], dtype=np.int64)) == []
    assert index.query_terms("") == () and index.query_terms("  ,;  ") == ()
    assert index.term_stats([]) == TermStats(6, 23, ())
    assert index.doc_terms([], np.array([11], dtype=np.int64)) == [DocTerms(2, ())]
    empty = make(tmp_path / "empty")
    assert empty.term_stats(terms) == TermStats(0, 0, (0,))
    assert empty.doc_terms(terms, np.array([10], dtype=np.int64)) == [None]


def test_statistics_follow_removal_and_replacement(make: Factory, tmp_path: Path) -> None:
    index = filled(make, tmp_path)
    terms = [term for term, _ in index.query_terms("fish red")]
    assert index.remove(np.array([10], dtype=np.int64)) == 1
    assert index.term_stats(terms) == TermStats(5, 19, (1, 3))
    assert index.doc_terms(terms, np.array([10, 14], dtype=np.int64)) == [
        None,
        DocTerms(8, (2, 1)),
    ]
    index.add(np.array([11], dtype=np.int64), ["fish pond"])  # replaces "red sun"
    assert index.term_stats(terms) == TermStats(5, 19, (2, 2))
    allowed = np.array([10, 11], dtype=np.int64)
    assert index.term_stats(terms, allowed) == TermStats(1, 2, (1, 0))
    ids = sorted(index.ids().tolist())
    hits = {h.id: h.score for h in index.search("fish red", 10)}
    assert scores_from_stats(index, "fish red", ids) == [hits.get(i, 0.0) for i in ids]
