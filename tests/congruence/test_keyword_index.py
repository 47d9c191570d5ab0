"""The same assertions against the in-memory fake and the real top-k BM25 index.

The fake has no stemmer and no stopwords, so the texts here use words that the real
tokenizer (FTS5's unicode61 + porter, index.bm25_tokens) keeps as they are."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from index.bm25_index import Bm25Index
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


def test_score_texts_gives_held_documents_their_search_score(make: Factory, tmp_path: Path) -> None:
    index = filled(make, tmp_path)
    hits = {h.id: h.score for h in index.search("red fish", 10)}
    scored = index.score_texts("red fish", [TEXTS[i] for i in sorted(TEXTS)])
    for i, score in zip(sorted(TEXTS), scored, strict=True):
        assert score == pytest.approx(hits.get(i, 0.0), rel=1e-9, abs=1e-12)
    # a text the index does not hold is scored with the index's statistics
    outside = index.score_texts("red fish", ["a red fish swims", "green frog", ""])
    assert outside[0] > 0 and outside[1] == 0 and outside[2] == 0
    assert index.score_texts("   ", ["red fish"]) == [0.0]
    assert make(tmp_path / "empty").score_texts("red", ["red"]) == [0.0]
