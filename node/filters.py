"""Metadata filters: ``{"key": value}`` or ``{"key": {"$in": [v1, v2]}}``, keys ANDed.

A condition on a key matches a fact whose value for that key equals one of the wanted
values, or, when the fact's value is a list of strings, whose list contains one of them.
Types are exact: ``2020`` does not match ``"2020"``. Filters are evaluated by the catalog
before ranking, never by trimming ranked results, so they hide nothing that matches.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.errors import InvalidFilter
from node.limits import MAX_FILTER_KEYS, MAX_IN_VALUES, MAX_METADATA_KEY_CHARS

Scalar = str | int | bool


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class MetadataFilter:
    conditions: tuple[Condition, ...]

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        """Evaluate in Python (used by the in-memory fakes and by tests)."""
        for cond in self.conditions:
            if cond.key not in metadata:
                return False
            have = metadata[cond.key]
            have_values = list(have) if isinstance(have, list | tuple) else [have]
            wanted = {encode_scalar(v) for v in cond.values}
            if not any(encode_scalar(v) in wanted for v in have_values):
                return False
        return True

    def to_json(self) -> dict[str, dict[str, list[Scalar]]]:
        """The filter as a client sends it: ``parse_filter`` of this gives it back."""
        return {c.key: {"$in": list(c.values)} for c in self.conditions}


def encode_scalar(value: Scalar) -> str:
    """The typed text form under which the catalog stores a metadata value."""
    return json.dumps(value, ensure_ascii=False)


def parse_filter(raw: Any) -> MetadataFilter | None:
    """Validate a filter as sent by a client; ``None`` or ``{}`` means no filter."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidFilter("filter must be an object of metadata key -> value or {'$in': [...]}")
    if len(raw) > MAX_FILTER_KEYS:
        raise InvalidFilter(f"filter may name at most {MAX_FILTER_KEYS} keys")
    conditions = []
    for key, spec in raw.items():
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY_CHARS:
            raise InvalidFilter("filter keys must be metadata key strings")
        _check_unicode(key, "filter key")
        if key.startswith("$"):
            raise InvalidFilter(f"unknown top-level filter operator {key!r}")
        if isinstance(spec, Mapping):
            if set(spec) != {"$in"}:
                raise InvalidFilter(
                    f"filter on {key!r}: the only operator is '$in', got {sorted(spec)}"
                )
            values = spec["$in"]
            if not isinstance(values, list) or not values or len(values) > MAX_IN_VALUES:
                raise InvalidFilter(
                    f"filter on {key!r}: '$in' needs a list of 1-{MAX_IN_VALUES} values"
                )
            conditions.append(Condition(key, tuple(_scalar(key, v) for v in values)))
        else:
            conditions.append(Condition(key, (_scalar(key, spec),)))
    return MetadataFilter(tuple(conditions)) if conditions else None


def _scalar(key: str, value: Any) -> Scalar:
    if isinstance(value, str):
        _check_unicode(value, f"filter value for {key!r}")
        return value
    if isinstance(value, bool | int):
        return value
    raise InvalidFilter(
        f"filter on {key!r}: values must be strings, integers or booleans, "
        f"not {type(value).__name__}"
    )


def _check_unicode(text: str, what: str) -> None:
    """Strings reach SQLite as UTF-8: a lone surrogate is a client error, not a crash."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidFilter(f"{what} is not valid Unicode (lone surrogate)") from exc
