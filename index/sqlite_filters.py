"""The SQL of a metadata filter (``node.filters``) over the catalog's ``fact_meta`` table.

Owns one translation: each condition of a filter becomes ``AND <id column> IN (SELECT fact_id
FROM fact_meta WHERE key = ? AND value IN (...))``, with every key and value a bound parameter
(never spliced into the SQL text), values encoded by ``node.filters.encode_scalar`` exactly as
the catalog stores them.
"""

from __future__ import annotations

from node.filters import MetadataFilter, encode_scalar


def filter_sql(flt: MetadataFilter | None, id_column: str) -> tuple[str, list[object]]:
    """``(clauses, params)`` restricting ``id_column`` to the facts ``flt`` matches (all
    conditions); ``("", [])`` without a filter."""
    if flt is None:
        return "", []
    clauses: list[str] = []
    params: list[object] = []
    for cond in flt.conditions:
        marks = ",".join("?" * len(cond.values))
        clauses.append(
            f"AND {id_column} IN (SELECT fact_id FROM fact_meta WHERE key = ? "
            f"AND value IN ({marks}))"
        )
        params += [cond.key, *(encode_scalar(v) for v in cond.values)]
    return " ".join(clauses), params
