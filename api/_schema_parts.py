"""JSON Schema fragments and field helpers shared by the wire schemas (``api.schemas``,
``api.query_schemas``): what the domain checks, said in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from node.facts import INT64_MAX, INT64_MIN, visible_character_pattern
from node.limits import (
    MAX_FILTER_KEYS,
    MAX_IN_VALUES,
    MAX_METADATA_KEY_CHARS,
    MAX_QUERY_BYTES,
    MAX_TEXT_BYTES,
)

# JSON Schema for what the domain checks (node.facts, node.filters), so that the OpenAPI
# document says what the API accepts. Byte limits (of UTF-8 text, of encoded metadata) and
# EIP-55 checksums cannot be said in JSON Schema; the descriptions say them. Every number comes
# from node.limits.
_KEY = {"type": "string", "minLength": 1, "maxLength": MAX_METADATA_KEY_CHARS, "pattern": "^[^$]"}
_SCALAR: list[dict[str, Any]] = [
    {"type": "string"},
    {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
    {"type": "boolean"},
]


def visible_text(schema: dict[str, Any]) -> None:
    schema.update(minLength=1, maxLength=MAX_TEXT_BYTES, pattern=visible_character_pattern())


def visible_query(schema: dict[str, Any]) -> None:
    schema.update(minLength=1, maxLength=MAX_QUERY_BYTES, pattern=visible_character_pattern())


def replace_type(schema: dict[str, Any]) -> None:
    for key in ("anyOf", "type", "additionalProperties"):
        schema.pop(key, None)


def metadata_schema(schema: dict[str, Any]) -> None:
    replace_type(schema)
    schema.update(
        anyOf=[
            {
                "type": "object",
                "propertyNames": _KEY,
                "additionalProperties": {
                    "anyOf": [*_SCALAR, {"type": "array", "items": {"type": "string"}}]
                },
            },
            {"type": "null"},
        ]
    )


def filter_schema(schema: dict[str, Any]) -> None:
    in_values = {
        "type": "object",
        "properties": {
            "$in": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_IN_VALUES,
                "items": {"anyOf": _SCALAR},
            }
        },
        "required": ["$in"],
        "additionalProperties": False,
    }
    replace_type(schema)
    schema.update(
        anyOf=[
            {
                "type": "object",
                "maxProperties": MAX_FILTER_KEYS,
                "propertyNames": _KEY,
                "additionalProperties": {"anyOf": [*_SCALAR, in_values]},
            },
            {"type": "null"},
        ]
    )


def absent(value: object) -> bool:
    """``exclude_if`` of optional fields left out of an answer when None."""
    return value is None


def model_cid_needs_vector(schema: dict[str, Any]) -> None:
    """A query's ``model_cid`` names the model of its ``vector``: with one, the other."""
    schema.update(
        {
            "if": {"properties": {"model_cid": {"type": "string"}}, "required": ["model_cid"]},
            "then": {"properties": {"vector": {"type": "array"}}, "required": ["vector"]},
        }
    )
