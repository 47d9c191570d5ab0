from __future__ import annotations

from typing import Any

import pytest

from node.errors import InvalidFilter
from node.filters import parse_filter
from node.search import Hit, format_context, reciprocal_rank_fusion


def test_rrf_rewards_agreement_and_breaks_ties_by_id() -> None:
    dense = [Hit(1, 0.9), Hit(2, 0.8), Hit(3, 0.7)]
    keyword = [Hit(3, 12.0), Hit(1, 10.0), Hit(4, 1.0)]
    fused = reciprocal_rank_fusion([dense, keyword])
    assert [h.id for h in fused] == [1, 3, 2, 4]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 62)
    assert reciprocal_rank_fusion([[Hit(7, 1.0)], [Hit(5, 1.0)]])[0].id == 5


def test_context_numbers_facts_and_cites_cids() -> None:
    text = format_context("q", [("bafyA", "first\nfact"), ("bafyB", "second")])
    assert "[1] first fact (cid: bafyA)" in text
    assert "[2] second (cid: bafyB)" in text
    assert "No facts" in format_context("q", [])


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
