"""The keyword index's text analysis: SQLite FTS5's ``porter unicode61 remove_diacritics 2``
tokenizer and the query words of ``index.keywords.fts_query``, for ``index.bm25_index``.

What it owns
    How a document becomes terms (``tokenize``), how a query becomes weighted terms
    (``query_terms``), the Porter stemmer both use (``stem``) and ``TOKENIZER_VERSION``, which
    ``index.bm25_file`` records: a saved index is only valid for the tokenizer that built it.

Tokenizer
    Tokens are runs of letters, digits and private-use characters (a few combining marks join
    a token and are dropped), case-folded, Latin diacritics removed, then stemmed by SQLite's
    Porter variant on the UTF-8 bytes (tokens under 3 or over 64 bytes are not stemmed). Its
    output equals SQLite's on the SciFact corpus and queries; it differs for code points that
    SQLite's Unicode 6.1 tables do not know (newer symbols, which SQLite treats as letters) and
    a few rare letters. The case-folding tables come from ``unicodedata``, so Python's Unicode
    version is part of the tokenizer too (the file records it beside ``TOKENIZER_VERSION``).

Queries
    The distinct lower-cased ``\\w+`` words that are not stopwords, at most
    ``MAX_QUERY_WORDS``, each tokenized like a document; a term's weight counts the distinct
    query words that stem to it (FTS5 scores each quoted word as a phrase of its own). One
    deliberate difference: a word the tokenizer splits (``foo_bar``) gives two terms here,
    where FTS5 would require the phrase.

Invariants
    - Pure functions of their input (and the Unicode tables): no state beyond caches.
    - Any change to what ``tokenize`` or ``stem`` returns must bump ``TOKENIZER_VERSION``.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from index.keywords import STOPWORDS

#: Recorded in the index file: bump it whenever ``tokenize``'s output changes.
TOKENIZER_VERSION = 1
#: Query words considered, as in ``index.keywords.fts_query``.
MAX_QUERY_WORDS = 64

_WORD = re.compile(r"\w+", re.UNICODE)
_VOWELS = frozenset("aeiou")
#: Combining marks that SQLite's unicode61 lets continue a token (and then drops).
_JOINING_MARKS = frozenset(
    [*range(0x300, 0x305), *range(0x306, 0x30D), 0x30F, 0x311, 0x31B, *range(0x323, 0x329)]
) | {0x32D, 0x32E, 0x330, 0x331}
#: ASCII text: letters lower-cased, digits kept, everything else a separator.
_ASCII_FOLD = bytes(
    c + 32 if 65 <= c <= 90 else c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(256)
)


def _latin(cp: int) -> bool:
    return cp < 0x250 or 0x1E00 <= cp < 0x1F00


def _strip_marks(text: str) -> str:
    nfd = unicodedata.normalize("NFD", text)
    return "".join(c for c in nfd if unicodedata.category(c) != "Mn")


@functools.cache
def _fold_table() -> dict[int, str]:
    """``str.translate`` table for the BMP: separators become a space, joining marks vanish,
    letters are case-folded (Latin ones lose diacritics); others map to themselves."""
    table: dict[int, str] = {}
    for cp in range(0x80):
        ch = chr(cp)
        if "A" <= ch <= "Z":
            table[cp] = ch.lower()
        elif not ch.isalnum():
            table[cp] = " "
    for cp in range(0x80, 0x10000):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        category = unicodedata.category(ch)
        if category[0] in "LN" or category in ("Co", "Cn"):
            folded = ch.casefold()
            if len(folded) != 1:
                folded = ch.lower()
                if len(folded) != 1:
                    folded = ch
            if _latin(ord(folded)) or _latin(cp):
                bare = _strip_marks(folded)
                if len(bare) == 1:
                    folded = bare.lower()
            if folded != ch:
                table[cp] = folded
        elif cp in _JOINING_MARKS:
            table[cp] = ""
        else:
            table[cp] = " "
    return table


def _is_vowel(c: str, y_is_vowel: bool) -> bool:
    return c in _VOWELS or (y_is_vowel and c == "y")


def _vc_end(w: str, start: int, end: int, prev_consonant: bool) -> int:
    """Index just past the first vowel-then-consonant in ``w[start:end]``, or 0."""
    consonant = prev_consonant
    i = start
    while i < end:
        consonant = not _is_vowel(w[i], consonant)
        if not consonant:
            break
        i += 1
    i += 1
    while i < end:
        consonant = not _is_vowel(w[i], consonant)
        if consonant:
            return i + 1
        i += 1
    return 0


def _m_gt0(w: str, n: int) -> bool:
    return _vc_end(w, 0, n, False) != 0


def _m_gt1(w: str, n: int) -> bool:
    j = _vc_end(w, 0, n, False)
    return j != 0 and _vc_end(w, j, n, True) != 0


def _m_eq1(w: str, n: int) -> bool:
    j = _vc_end(w, 0, n, False)
    return j != 0 and _vc_end(w, j, n, True) == 0


def _ends_cvc(w: str, n: int) -> bool:
    if w[n - 1] in "wxy":
        return False
    mask = 0
    consonant = False
    for i in range(n):
        consonant = not _is_vowel(w[i], consonant)
        mask = (mask << 1) | consonant
    return (mask & 7) == 5


def _has_vowel(w: str, n: int) -> bool:
    return any(_is_vowel(w[i], i > 0) for i in range(n))


def _rules(spec: str) -> tuple[tuple[str, str], ...]:
    return tuple((a, b) for a, _, b in (rule.partition(">") for rule in spec.split()))


# Porter steps 2 and 3 (suffix>replacement) and 4 (suffixes removed), in SQLite's order
_STEP2 = _rules(
    "ational>ate tional>tion enci>ence anci>ance izer>ize logi>log bli>ble alli>al entli>ent "
    "eli>e ousli>ous ization>ize ation>ate ator>ate alism>al iveness>ive fulness>ful "
    "ousness>ous aliti>al iviti>ive biliti>ble"
)
_STEP3 = _rules("ical>ic ness> icate>ic iciti>ic ful> ative> alize>al")
_STEP4 = tuple(
    suffix
    for suffix, _ in _rules(
        "al ance ence er ic able ible ant ement ment ent ion ou ism ate iti ous ive ize"
    )
)


def _replace_suffix(w: str, rules: tuple[tuple[str, str], ...]) -> str:
    """The first rule whose suffix ends ``w`` (leaving a stem) decides; m > 0 applies it."""
    n = len(w)
    for suffix, out in rules:
        if n > len(suffix) and w.endswith(suffix):
            stem = n - len(suffix)
            return w[:stem] + out if _m_gt0(w, stem) else w
    return w


def _porter(w: str) -> str:
    """SQLite FTS5's Porter stemmer on a lower-case token (one character per UTF-8 byte)."""
    n = len(w)
    if n < 3 or n > 64:
        return w
    if w[-1] == "s":  # step 1a
        if w[-2] == "e":
            if (n > 4 and w[-4] == "s" and w[-3] == "s") or (n > 3 and w[-3] == "i"):
                w = w[:-2]
            else:
                w = w[:-1]
        elif w[-2] != "s":
            w = w[:-1]
    n = len(w)
    cut = 0
    if n > 3 and w.endswith("eed"):  # step 1b
        if _m_gt0(w, n - 3):
            w = w[:-1]
    elif n > 2 and w.endswith("ed"):
        if _has_vowel(w, n - 2):
            cut = 2
    elif n > 3 and w.endswith("ing") and _has_vowel(w, n - 3):
        cut = 3
    if cut:
        w = w[:-cut]
        n = len(w)
        if n > 2 and w.endswith(("at", "bl", "iz")):
            w += "e"
        else:
            c = w[-1]
            if not _is_vowel(c, False) and c not in "lsz" and n > 1 and c == w[-2]:
                w = w[:-1]
            elif _m_eq1(w, n) and _ends_cvc(w, n):
                w += "e"
    if w[-1] == "y" and _has_vowel(w, len(w) - 1):  # step 1c
        w = w[:-1] + "i"
    w = _replace_suffix(w, _STEP2)
    w = _replace_suffix(w, _STEP3)
    n = len(w)
    for suffix in _STEP4:
        if n > len(suffix) and w.endswith(suffix):
            stem = n - len(suffix)
            if _m_gt1(w, stem) and (suffix != "ion" or w[stem - 1] in "st"):
                w = w[:stem]
            break
    n = len(w)  # step 5a
    if w[-1] == "e" and (_m_gt1(w, n - 1) or (_m_eq1(w, n - 1) and not _ends_cvc(w, n - 1))):
        w = w[:-1]
    n = len(w)  # step 5b
    if n > 1 and w[-1] == "l" and w[-2] == "l" and _m_gt1(w, n - 1):
        w = w[:-1]
    return w


@functools.lru_cache(maxsize=1 << 16)
def stem(token: str) -> str:
    """A folded token's Porter stem, computed on its UTF-8 bytes as SQLite does."""
    if token.isascii():
        return _porter(token)
    raw = token.encode("utf-8", "surrogatepass")  # a lone surrogate must not raise
    if len(raw) < 3 or len(raw) > 64:
        return token
    stemmed = _porter(raw.decode("latin-1")).encode("latin-1")
    try:
        return stemmed.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:  # step 1b cut a multi-byte character: keep the bytes
        return stemmed.decode("utf-8", "surrogateescape")


def tokenize(text: str) -> list[str]:
    """A document's terms in order, as FTS5's porter/unicode61 tokenizer produces them."""
    if text.isascii():
        words = text.encode("ascii").translate(_ASCII_FOLD).decode("ascii").split()
    else:
        words = text.translate(_fold_table()).split()
    return [stem(w) for w in words]


def query_terms(text: str) -> dict[str, int]:
    """A query's terms and weights: ``index.keywords.fts_query``'s words, tokenized."""
    words: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word not in STOPWORDS and word not in words:
            words.append(word)
            if len(words) == MAX_QUERY_WORDS:
                break
    weights: dict[str, int] = {}
    for word in words:
        for term in dict.fromkeys(tokenize(word)):
            weights[term] = weights.get(term, 0) + 1
    return weights
