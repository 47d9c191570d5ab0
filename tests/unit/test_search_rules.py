from __future__ import annotations

import random
from typing import Any

import pytest

from node.errors import InvalidFilter
from node.filters import parse_filter
from node.search import ContextFact, Hit, format_context, reciprocal_rank_fusion


def test_rrf_rewards_agreement_and_breaks_ties_by_id() -> None:
    dense = [Hit(1, 0.9), Hit(2, 0.8), Hit(3, 0.7)]
    keyword = [Hit(3, 12.0), Hit(1, 10.0), Hit(4, 1.0)]
    fused = reciprocal_rank_fusion([dense, keyword])
    assert [h.id for h in fused] == [1, 3, 2, 4]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 62)
    assert reciprocal_rank_fusion([[Hit(7, 1.0)], [Hit(5, 1.0)]])[0].id == 5


@pytest.mark.parametrize("seed", range(5))
def test_rrf_equals_the_sum_ordered_by_score_then_id(seed: int) -> None:
    """Many exact ties (the same ranks in mirrored lists): order by (-score, id), scores the
    float sums in list order."""
    rng = random.Random(seed)
    ids = rng.sample(range(1000), 120)
    dense = [Hit(i, 0.0) for i in ids[:100]]
    keyword = [Hit(i, 0.0) for i in ids[20:] if rng.random() < 0.8]
    mirrored = [Hit(h.id + 5000, 0.0) for h in dense]
    fused = reciprocal_rank_fusion([dense, keyword, mirrored])
    want: dict[int, float] = {}
    for ranking in (dense, keyword, mirrored):
        for rank, hit in enumerate(ranking, start=1):
            want[hit.id] = want.get(hit.id, 0.0) + 1.0 / (60 + rank)
    assert [(h.id, h.score) for h in fused] == sorted(want.items(), key=lambda x: (-x[1], x[0]))


def test_context_numbers_facts_and_cites_cids() -> None:
    facts = [ContextFact("bafyA", "first\nfact", 0.6), ContextFact("bafyB", "second", 0.5)]
    text = format_context("q", facts, 0.35)
    assert "[1] first fact (cid: bafyA)" in text
    assert "[2] second (cid: bafyB)" in text
    assert "No facts" in format_context("q", [], 0.35)


def test_context_cites_only_relevant_facts_and_says_when_none_is() -> None:
    facts = [
        ContextFact("bafyA", "close", 0.61),
        ContextFact("bafyB", "far", 0.2),
        ContextFact("bafyC", "unknown", None),
        ContextFact("bafyD", "at the threshold", 0.35),
    ]
    text = format_context("q", facts, 0.35)
    assert "[1] close (cid: bafyA)" in text and "[2] at the threshold (cid: bafyD)" in text
    assert "bafyB" not in text and "bafyC" not in text
    empty = format_context("who won?", [ContextFact("bafyB", "far", 0.2)], 0.35)
    assert "Nothing in this knowledge hub is relevant" in empty and "0.20" in empty
    assert "bafyB" not in empty and "[1]" not in empty
    assert "[1]" in format_context("q", [ContextFact("bafyB", "far", 0.2)], -1.0)


def test_filter_semantics() -> None:
    flt = parse_filter({"lang": "en", "tags": {"$in": ["x", "y"]}, "year": 2020})
    assert flt is not None
    assert flt.matches({"lang": "en", "tags": ["a", "y"], "year": 2020})
    assert not flt.matches({"lang": "en", "tags": ["a"], "year": 2020})
    assert not flt.matches({"lang": "en", "tags": ["x"], "year": "2020"})  # types are exact
    assert not flt.matches({"lang": "en", "tags": ["x"]})
    assert parse_filter(None) is None and parse_filter({}) is None
    bool_filter = parse_filter({"ok": True})
    assert bool_filter is not None
    assert not bool_filter.matches({"ok": 1})


@pytest.mark.parametrize(
    "raw",
    [
        [],
        "lang=en",
        {"$or": []},
        {"k": {"$gt": 1}},
        {"k": {"$in": []}},
        {"k": {"$in": "x"}},
        {"k": 1.5},
        {"k": None},
        {"k": {"$in": [[1]]}},
        {"": "x"},
        {f"k{i}": "v" for i in range(17)},
        {"k": {"$in": list(range(300))}},
    ],
)
def test_bad_filters_are_rejected(raw: Any) -> None:
    with pytest.raises(InvalidFilter):
        parse_filter(raw)
