"""Pure checks behind the hostile-input suite (tests/integration/test_hostile_http.py)."""

from __future__ import annotations

import json
import random
import re
import string
import subprocess
import sys

import pytest

from api.errors import retry_after_header
from api.middleware import MAX_JSON_DEPTH, json_depth_exceeds
from node.cid import parse_cid
from node.errors import InvalidCid, InvalidFact, InvalidFilter, Overloaded, Unavailable, printable
from node.facts import has_visible_character, make_fact, visible_character_pattern
from node.filters import parse_filter
from tests.conftest import ROOT


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_json_depth_is_measured_outside_strings() -> None:
    assert not json_depth_exceeds(nested(MAX_JSON_DEPTH))
    assert json_depth_exceeds(nested(MAX_JSON_DEPTH + 1))
    assert json_depth_exceeds(b'{"a":{"b":' + nested(MAX_JSON_DEPTH) + b"}}")
    assert not json_depth_exceeds(json.dumps({"t": "[" * 1000}).encode())
    # escaped quotes do not end a string
    assert not json_depth_exceeds(json.dumps({"t": '\\"' + "[" * 100 + '"'}).encode())
    assert json_depth_exceeds(b'{"q":"x","filter":{"a":' + nested(80_000) + b"}}")


@pytest.mark.parametrize(
    "imports", ["node.signing", "node.signing, contracts.registry", "contracts.registry"]
)
def test_the_recursion_limit_is_restored_after_py_ecc(imports: str) -> None:
    # py_ecc (under web3 and eth_account) raises it to 100,000 at import; json then overflowed
    # the C stack (exit 139)
    code = (
        f"import {imports}, json, sys\n"
        "assert sys.getrecursionlimit() <= 10000, sys.getrecursionlimit()\n"
        "try:\n    json.loads('[' * 200000 + ']' * 200000)\n"
        "except RecursionError:\n    print('refused')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "refused", result


def test_no_string_makes_parse_cid_raise_anything_but_invalid_cid() -> None:
    rng = random.Random(14)
    alphabet = string.printable + "\x00\udc80é😀"
    samples = ["0", "1", "b", "z", "f", "m", "u", "Q", "Qm", "9", "f01", "f0171", "\udc80"]
    samples += [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(5000)
    ]
    for text in samples:
        with pytest.raises(InvalidCid):
            parse_cid(text)


@pytest.mark.parametrize(
    "text", ["\x00", "\ufeff", "\u200b\u200d", " \t\r\n", "\u00a0\u3000", "\u2028"]
)
def test_texts_without_a_visible_character_are_not_facts(text: str) -> None:
    assert not has_visible_character(text)
    with pytest.raises(InvalidFact, match="visible"):
        make_fact(text)
    assert re.search(visible_character_pattern(), text) is None


@pytest.mark.parametrize("text", ["a", "\u200ba", "😀", "ж", "\u0301", "\U000e0001x", "\U00100000"])
def test_texts_with_a_visible_character_are_facts(text: str) -> None:
    assert has_visible_character(text)
    assert make_fact(text).text == text
    assert re.search(visible_character_pattern(), text) is not None


def test_the_schema_pattern_is_the_visibility_rule_for_every_code_point() -> None:
    pattern = re.compile(visible_character_pattern())
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue  # no valid string holds a surrogate
        ch = chr(code)
        assert (pattern.search(ch) is not None) == has_visible_character(ch), hex(code)


@pytest.mark.parametrize(
    "raw",
    [{"\udc80": "x"}, {"a": "\udc80"}, {"a": {"$in": ["ok", "\ud800"]}}],
)
def test_lone_surrogates_in_filters_are_invalid_filters(raw: dict[str, object]) -> None:
    with pytest.raises(InvalidFilter, match="lone surrogate"):
        parse_filter(raw)


def test_errors_quoting_lone_surrogates_stay_encodable() -> None:
    with pytest.raises(InvalidFact) as caught:
        make_fact("hello", {"\udc80": "x"})
    error = caught.value
    assert error.field is not None
    (error.message + error.field).encode("utf-8")
    assert printable("a\udc80b") == "a\ufffdb" and printable("ok") == "ok"


def test_overloaded_errors_carry_retry_after_in_whole_seconds() -> None:
    assert retry_after_header(Overloaded("busy", retry_after=0.2)) == {"Retry-After": "1"}
    assert retry_after_header(Overloaded("busy", retry_after=2.3)) == {"Retry-After": "3"}
    assert retry_after_header(Unavailable("down")) is None
