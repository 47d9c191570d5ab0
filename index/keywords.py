"""Free text as an SQLite FTS5 query: the keyword side of search.

Each distinct word that is not a stopword becomes a quoted term, ORed, at most 64 of them;
quoting makes every term a literal (no FTS5 syntax reaches the engine from a user's text).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
#: Words too common to help BM25 rank; dropping them keeps OR queries cheap.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)


def fts_query(text: str) -> str | None:
    """Free text as an FTS5 query: each distinct non-stopword term quoted, ORed."""
    terms: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word not in STOPWORDS and word not in terms:
            terms.append(word)
    if not terms:
        return None
    return " OR ".join(f'"{t}"' for t in terms[:64])
