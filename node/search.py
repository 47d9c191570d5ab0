"""Ranking rules shared by every backend: fusion, de-duplication, the LLM context string."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from node.filters import MetadataFilter

#: The constant of reciprocal-rank fusion (Cormack et al. 2009); 60 is the usual choice.
RRF_K = 60


class SearchMode(StrEnum):
    DENSE = "dense"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    k: int = 5
    mode: SearchMode = SearchMode.HYBRID
    filter: MetadataFilter | None = None
    min_score: float | None = None
    #: A query embedding computed by the caller with the node's model; replaces embedding
    #: ``text`` for the dense ranking (``text`` still drives keyword search and the context).
    vector: tuple[float, ...] | None = None
    #: Also return facts that a newer version by their contributor replaces (``supersedes``).
    include_superseded: bool = False


@dataclass(frozen=True, slots=True)
class Hit:
    """A ranked catalog row id with its score in the mode's own scale."""

    id: int
    score: float


def reciprocal_rank_fusion(rankings: Iterable[Sequence[Hit]], k: int = RRF_K) -> list[Hit]:
    """Fuse ranked lists: score = sum over lists of 1 / (k + rank), rank from 1."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (k + rank)
    return [Hit(i, s) for i, s in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


def format_context(query: str, facts: Sequence[tuple[str, str]]) -> str:
    """A block ready to paste into an LLM prompt: numbered facts, each citing its CID.

    ``facts`` holds ``(cid, text)`` pairs in rank order.
    """
    if not facts:
        return f'No facts in this knowledge hub match "{query}".'
    lines = [f'Facts retrieved for "{query}" (cite as [n]; each CID is an IPFS content address):']
    for n, (cid, text) in enumerate(facts, start=1):
        flat = " ".join(text.split())
        lines.append(f"[{n}] {flat} (cid: {cid})")
    return "\n".join(lines)
