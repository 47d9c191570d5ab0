"""index.bm25_index (with its tokenizer, store and file modules): exact BM25 top-k against a
brute-force reference and SQLite FTS5, updates, persistence and its failure modes, filters,
Unicode."""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import sqlite3
import struct
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from index import bm25_index, bm25_kernel
from index.bm25_file import FORMAT_VERSION, HEADER, MAGIC
from index.bm25_index import Bm25Index, Bm25Options, CorruptIndex
from index.bm25_tokens import TOKENIZER_VERSION, query_terms, tokenize
from index.keywords import fts_query
from node.errors import StorageError
from node.keyword_stats import BM25_B, BM25_K1, DocTerms, bm25_scores
from node.search import Hit

VOCABULARY = (
    "cell cells protein proteins gene genes expression expressed mouse mice tumor tumors "
    "growth receptor receptors signaling pathway insulin glucose blood pressure risk patients "
    "treatment therapy clinical trial dose response vitamin cancer immune virus infection "
    "brain neuron memory sleep diet exercise heart the of and in a to with"
)
WORDS = VOCABULARY.split()


def random_corpus(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        length = rng.choice([0, 1, 2, 3, 5, 8, 13, 21, 34])
        docs.append(" ".join(rng.choice(WORDS) for _ in range(length)))
    docs[1] = docs[0]  # identical documents tie exactly: ids break the tie
    return docs


def random_queries(seed: int, count: int) -> list[str]:
    rng = random.Random(seed + 1000)
    return [" ".join(rng.sample(WORDS, rng.randint(1, 6))) for _ in range(count)]


def reference(
    docs: dict[int, str], query: str, k: int, k1: float = 1.2, b: float = 0.75
) -> list[tuple[int, float]]:
    """BM25 as SQLite FTS5 computes it, by brute force over every document."""
    counts = {i: Counter(tokenize(text)) for i, text in docs.items()}
    n = len(docs)
    avgdl = sum(sum(c.values()) for c in counts.values()) / n
    scored = []
    for i, c in counts.items():
        dl = sum(c.values())
        score, matched = 0.0, False
        for term, weight in query_terms(query).items():
            tf = c.get(term, 0)
            if not tf:
                continue
            matched = True
            df = sum(1 for other in counts.values() if term in other)
            idf = math.log((n - df + 0.5) / (df + 0.5))
            idf = idf if idf > 0 else 1e-6
            score += weight * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
        if matched:
            scored.append((i, score))
    scored.sort(key=lambda x: (-x[1], x[0]))
    return scored[:k]


def assert_same(hits: Sequence[Hit], want: Sequence[tuple[int, float]]) -> None:
    got = [(h.id, h.score) for h in hits]
    assert [i for i, _ in got] == [i for i, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert a == pytest.approx(b, abs=1e-6)


def build(docs: dict[int, str], options: Bm25Options | None = None) -> Bm25Index:
    index = Bm25Index(options)
    index.add(list(docs), list(docs.values()))
    return index


# -- exact ranking --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 5, 20, 1000])
def test_top_k_equals_brute_force(seed: int, k: int) -> None:
    docs = {10 + 3 * i: text for i, text in enumerate(random_corpus(seed, 300))}
    index = build(docs)
    for query in random_queries(seed, 40):
        assert_same(index.search(query, k), reference(docs, query, k))


def test_parameters_follow_the_options() -> None:
    docs = dict(enumerate(random_corpus(7, 200), start=1))
    index = build(docs, Bm25Options(k1=0.9, b=0.4))
    for query in random_queries(7, 20):
        assert_same(index.search(query, 10), reference(docs, query, 10, k1=0.9, b=0.4))


def test_ranking_equals_sqlite_fts5() -> None:
    """The catalog's keyword search: same ids in the same order, same scores."""
    docs = dict(enumerate(random_corpus(11, 400), start=1))
    docs[500] = "Signaling pathways: the Insulin-receptor; signalling, signaled & signals!"
    db = sqlite3.connect(":memory:")
    try:
        db.execute(
            "CREATE VIRTUAL TABLE f USING fts5(text, "
            "tokenize='porter unicode61 remove_diacritics 2')"
        )
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no FTS5")
    db.executemany("INSERT INTO f (rowid, text) VALUES (?, ?)", docs.items())
    index = build(docs)
    queries = [*random_queries(11, 60), "Does insulin signalling in cells raise glucose?"]
    for query in queries:
        match = fts_query(query)
        if match is None:  # stopwords only
            assert index.search(query, 25) == []
            continue
        rows = db.execute(
            "SELECT rowid, bm25(f) AS s FROM f WHERE f MATCH ? ORDER BY s, rowid LIMIT 25",
            (match,),
        ).fetchall()
        assert_same(index.search(query, 25), [(r[0], -r[1]) for r in rows])


def test_query_terms_follow_fts_query() -> None:
    # stopwords dropped, words de-duplicated, two words with one stem count twice
    assert query_terms("The cells and THE cell of a tumor") == {"cell": 2, "tumor": 1}
    assert query_terms(" ".join(f"w{i}" for i in range(100))) == {f"w{i}": 1 for i in range(64)}


def test_empty_and_stopword_queries_find_nothing() -> None:
    index = build({1: "the cell", 2: "of mice and men"})
    assert index.search("", 5) == []
    assert index.search("   ?!  ", 5) == []
    assert index.search("the of and", 5) == []
    assert index.search("cell", 0) == []
    assert index.search("unknownword", 5) == []
    assert Bm25Index().search("cell", 5) == []


# -- updates --------------------------------------------------------------------------------------


def test_remove_equals_a_fresh_build() -> None:
    docs = dict(enumerate(random_corpus(5, 300), start=1))
    index = build(docs, Bm25Options(compact_fraction=1.0))  # keep the tombstones
    gone = list(range(1, 301, 3))
    assert index.remove([*gone, 999_999]) == len(gone)
    assert index.tombstones == len(gone)
    rest = {i: t for i, t in docs.items() if i not in set(gone)}
    fresh = build(rest)
    assert len(index) == len(rest)
    assert index.ids().tolist() == sorted(rest)
    assert 1 not in index and 2 in index
    for query in random_queries(5, 30):
        want = reference(rest, query, 15)
        assert_same(index.search(query, 15), want)
        assert_same(fresh.search(query, 15), want)
    index.compact()
    assert index.tombstones == 0
    for query in random_queries(5, 30):
        assert_same(index.search(query, 15), reference(rest, query, 15))


def test_compaction_runs_past_the_threshold() -> None:
    docs = dict(enumerate(random_corpus(6, 100), start=1))
    index = build(docs, Bm25Options(compact_fraction=0.25))
    index.remove(range(1, 20))
    assert index.tombstones == 19
    index.remove(range(20, 40))
    assert index.tombstones == 0  # 39 > 25 % of 100 slots
    rest = {i: t for i, t in docs.items() if i >= 40}
    for query in random_queries(6, 20):
        assert_same(index.search(query, 10), reference(rest, query, 10))


def test_add_replaces_and_grows() -> None:
    docs = dict(enumerate(random_corpus(8, 50), start=1))
    index = build(docs)
    index.add([3, 1000], ["insulin insulin receptor", "brand new neuron memory"])
    docs[3] = "insulin insulin receptor"
    docs[1000] = "brand new neuron memory"
    assert len(index) == len(docs)
    for query in ["insulin receptor", "neuron memory", *random_queries(8, 20)]:
        assert_same(index.search(query, 10), reference(docs, query, 10))
    for fact_id in range(2000, 2600):  # one at a time, as single facts arrive
        text = f"cell growth gene{fact_id % 7}"
        index.add([fact_id], [text])
        docs[fact_id] = text
    for query in ["gene3 growth", "cell", *random_queries(8, 10)]:
        assert_same(index.search(query, 10), reference(docs, query, 10))


def test_add_rejects_mismatched_input() -> None:
    index = Bm25Index()
    with pytest.raises(ValueError):
        index.add([1, 2], ["one"])
    with pytest.raises(ValueError):
        index.add([1, 1], ["one", "two"])
    index.add([], [])
    assert len(index) == 0
    index.add(np.array([5, 6], dtype=np.int64), ["cell", "cells"])
    assert index.ids().tolist() == [5, 6]


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        Bm25Options(k1=-1.0)
    with pytest.raises(ValueError):
        Bm25Options(k1=float("nan"))
    with pytest.raises(ValueError):
        Bm25Options(b=1.5)
    with pytest.raises(ValueError):
        Bm25Options(compact_fraction=0.0)


# -- filters --------------------------------------------------------------------------------------


def filtered_reference(
    docs: dict[int, str], query: str, k: int, keep: set[int]
) -> list[tuple[int, float]]:
    return [(i, s) for i, s in reference(docs, query, len(docs)) if i in keep][:k]


@pytest.mark.parametrize("direct", [True, False], ids=["scored-directly", "candidates-filtered"])
def test_filters_return_k_hits_when_k_qualify(
    monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    monkeypatch.setattr(bm25_index, "_direct", lambda allowed, postings: direct)
    docs = dict(enumerate(random_corpus(9, 400), start=1))
    index = build(docs)
    query = "insulin glucose risk"
    ranked = reference(docs, query, len(docs))
    assert len(ranked) > 60
    top = [i for i, _ in ranked[:40]]
    deep = {i for i, _ in ranked[40:]}
    everything = set(docs)
    # the 40 best are excluded: the next 10 come back, not fewer
    assert_same(index.search(query, 10, excluded=set(top)), ranked[40:50])
    assert_same(index.search(query, 10, excluded=np.array(top[::-1])), ranked[40:50])
    # allowed: an array, a list, a set
    small = sorted(deep)[:30]
    want = filtered_reference(docs, query, 10, set(small))
    assert_same(index.search(query, 10, allowed=np.array(small)), want)
    large = everything - set(top)
    want = filtered_reference(docs, query, 10, large)
    assert_same(index.search(query, 10, allowed=sorted(large)), want)
    assert_same(index.search(query, 10, allowed=large), want)
    # predicates: checked in rank order, the window widens until k pass
    assert_same(index.search(query, 10, allowed=lambda i: i in deep), ranked[40:50])
    assert_same(index.search(query, 10, excluded=lambda i: i not in deep), ranked[40:50])
    # both at once
    both = index.search(query, 5, allowed=np.array(sorted(deep)), excluded={ranked[40][0]})
    assert_same(both, ranked[41:46])
    # fewer qualify than k: all of them, nothing else
    assert_same(index.search(query, 10, allowed=[top[3], top[7], 99_999]), [ranked[3], ranked[7]])
    assert index.search(query, 10, allowed=[]) == []
    assert index.search(query, 10, allowed=lambda i: False) == []
    assert_same(index.search(query, 10, excluded=[]), ranked[:10])


@pytest.mark.parametrize("direct", [True, False], ids=["scored-directly", "candidates-filtered"])
def test_filters_never_return_removed_ids(monkeypatch: pytest.MonkeyPatch, direct: bool) -> None:
    monkeypatch.setattr(bm25_index, "_direct", lambda allowed, postings: direct)
    docs = dict(enumerate(random_corpus(10, 100), start=1))
    index = build(docs, Bm25Options(compact_fraction=1.0))
    index.remove([1, 2, 3])
    for hits in (
        index.search("cell gene", 100, allowed=np.arange(1, 101)),
        index.search("cell gene", 100, allowed=[1, 2, 3, 4]),
        index.search("cell gene", 100, allowed=lambda i: True),
    ):
        assert not {h.id for h in hits} & {1, 2, 3}


# -- the compiled scorer (index.bm25_kernel) -----------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 7, 50, 400])
def test_top_k_breaks_many_ties_by_id(k: int) -> None:
    """Whole groups of identical documents score exactly alike: the heap keeps the k best
    by (score desc, id asc), whatever order the slots arrive in."""
    rng = random.Random(k)
    texts = ["cell gene", "cell", "gene protein the", "protein", "cell cell gene"]
    ids = rng.sample(range(1, 10_000), 300)  # added in random id order
    docs = {i: texts[n % len(texts)] for n, i in enumerate(ids)}
    index = build(docs)
    for query in ["cell gene", "protein", "cell protein gene"]:
        assert_same(index.search(query, k), reference(docs, query, k))
        denied = set(ids[::7])
        kept = {i: t for i, t in docs.items() if i not in denied}
        got = index.search(query, k, excluded=np.array(sorted(denied)))
        want = [h for h in reference(docs, query, len(docs)) if h[0] not in denied][:k]
        assert [h.id for h in got] == [i for i, _ in want]
        assert all(h.id in kept for h in got)


def test_every_slot_touched_by_every_term() -> None:
    """As many documents as the scorer's buffers hold, each holding every query term: the
    touched list fills up and is written one past its slots (the spare entry)."""
    docs = {i: "cell gene" if i % 3 else "gene cell cell" for i in range(1, 1025)}
    index = build(docs)
    assert index._scratch.acc.size in (0, 1024)
    for k in (1, 10, 1024):
        assert_same(index.search("cell gene", k), reference(docs, "cell gene", k))
    assert index._scratch.acc.size == 1024


def test_a_failure_mid_query_leaves_no_partial_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    """The accumulator is reused across queries: a query that fails between adding and
    gathering must not leave its sums behind for the next one."""
    docs = dict(enumerate(random_corpus(21, 200), start=1))
    index = build(docs)
    want = index.search("cell gene protein", 20)

    def broken(*args: object) -> int:
        raise RuntimeError("injected")

    with monkeypatch.context() as patch:
        patch.setattr(bm25_kernel, "select", broken)
        with pytest.raises(RuntimeError):
            index.search("cell gene", 20)
    assert index.search("cell gene protein", 20) == want
    assert_same(want, reference(docs, "cell gene protein", 20))


def test_kernels_compile_or_load_at_warm_up() -> None:
    bm25_kernel.warm()
    assert bm25_kernel.accumulate.signatures and bm25_kernel.select.signatures


# -- statistics for scoring elsewhere (node.keyword_stats) ---------------------------------------


def stats_scores(index: Bm25Index, query: str, ids: Sequence[int]) -> list[float]:
    weights = index.query_terms(query)
    terms = [t for t, _ in weights]
    docs = index.doc_terms(terms, np.array(ids, dtype=np.int64))
    held = [d for d in docs if d is not None]
    assert len(held) == len(ids)
    return bm25_scores([w for _, w in weights], index.term_stats(terms), held)


@pytest.mark.parametrize("direct", [True, False], ids=["scored-directly", "candidates-filtered"])
def test_scores_from_statistics_equal_search_scores_exactly(
    monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    monkeypatch.setattr(bm25_index, "_direct", lambda allowed, postings: direct)
    docs = dict(enumerate(random_corpus(13, 300), start=1))
    index = build(docs, Bm25Options(compact_fraction=1.0))
    index.remove(range(1, 300, 4))  # tombstones stay in the postings
    allowed = np.array(sorted(index.ids().tolist())[::3], dtype=np.int64)
    for query in ["cell cells the gene", *random_queries(13, 30)]:
        hits = index.search(query, 1000, allowed=allowed)
        assert stats_scores(index, query, [h.id for h in hits]) == [h.score for h in hits]
    index.compact()
    for query in random_queries(14, 10):
        hits = index.search(query, 1000)
        assert stats_scores(index, query, [h.id for h in hits]) == [h.score for h in hits]


def test_statistics_equal_a_fresh_build_of_the_allowed_documents() -> None:
    docs = dict(enumerate(random_corpus(15, 300), start=1))
    index = build(docs, Bm25Options(compact_fraction=1.0))
    index.remove(range(1, 300, 5))
    index.add([2, 7], ["insulin glucose the", "cell cell cell"])  # replaced: old slots dead
    docs.update({2: "insulin glucose the", 7: "cell cell cell"})
    subset = [i for i in range(300, 0, -1) if i % 3 == 0 or i in (2, 7)]  # includes removed ids
    fresh = build({i: docs[i] for i in subset if i in index})
    terms = [t for t, _ in index.query_terms(VOCABULARY)] + ["zzz"]
    allowed = np.array([*subset, 10_000], dtype=np.int64)
    assert index.term_stats(terms, allowed) == fresh.term_stats(terms)
    whole = build({i: docs[i] for i in index.ids().tolist()})
    assert index.term_stats(terms) == whole.term_stats(terms)
    assert index.term_stats(terms, index.ids()) == whole.term_stats(terms)
    ids = index.ids().tolist()
    assert index.doc_terms(terms, ids) == index.text_terms(terms, [docs[i] for i in ids])
    counts = Counter(tokenize(docs[7]))
    assert index.doc_terms(["cell", "zzz"], [7]) == [DocTerms(counts.total(), (3, 0))]


def test_stopword_queries_have_no_terms() -> None:
    index = build({1: "the cell", 2: "of mice and men"})
    assert index.query_terms("the of and") == () and index.query_terms("") == ()
    assert index.query_terms("The cells and THE cell") == (("cell", 2),)
    assert index.text_terms(["the", "cell"], ["the cell of the"]) == [DocTerms(4, (2, 1))]
    assert index.doc_terms(["the"], [1, 3]) == [DocTerms(2, (1,)), None]


def test_default_parameters_are_the_shared_formula() -> None:
    assert (Bm25Options().k1, Bm25Options().b) == (BM25_K1, BM25_B)


# -- Unicode --------------------------------------------------------------------------------------


def test_unicode_folds_like_fts5() -> None:
    docs = {
        1: "Café Ærøskøbing NAÏVE résumé",
        2: "cafe\u0301 nai\u0308ve",  # decomposed accents
        3: "10 µg of IL-6 (μ-opioid) in Zürich",
        4: "蛋白质 表达 タンパク質 белок Белки",
        5: "emoji 🧬 and symbols ∑ ≥ × only",
        6: "lone \ud800 surrogate and \udcff too",
        7: "",
    }
    index = build(docs)
    assert tokenize("Café") == ["cafe"]
    assert tokenize("RUNNING runs Ran") == ["run", "run", "ran"]
    assert sorted(h.id for h in index.search("cafe", 5)) == [1, 2]
    assert sorted(h.id for h in index.search("naïve", 5)) == [1, 2]
    assert [h.id for h in index.search("zurich", 5)] == [3]
    assert [h.id for h in index.search("μg", 5)] == [3]  # micro sign folds to mu
    assert [h.id for h in index.search("БЕЛКИ", 5)] == [4]
    assert [h.id for h in index.search("表达", 5)] == [4]
    assert [h.id for h in index.search("🧬 symbols", 5)] == [5]
    assert [h.id for h in index.search("surrogate", 5)] == [6]
    assert len(index) == 7  # an empty document counts in N, matches nothing


def test_unicode_survives_save_and_load(tmp_path: Path) -> None:
    texts = ["Ærø \ud800x \udcff ÿ" * 3, "ᾁ ǡ İstanbul ß", "x" * 100 + "é"]
    index = build(dict(enumerate(texts, start=1)))
    index.save(tmp_path / "kw.bm25")
    loaded = Bm25Index.load(tmp_path / "kw.bm25")
    for query in ["ærø", "istanbul", "ß", "x" * 100 + "e"]:
        assert [(h.id, h.score) for h in loaded.search(query, 5)] == [
            (h.id, h.score) for h in index.search(query, 5)
        ]


# -- persistence ----------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    docs = dict(enumerate(random_corpus(12, 300), start=100))
    index = build(docs, Bm25Options(compact_fraction=1.0))
    index.remove(range(100, 150))  # tombstones are not written
    rest = {i: t for i, t in docs.items() if i >= 150}
    path = tmp_path / "sub" / "keywords.bm25"
    index.save(path)
    assert path.read_bytes().startswith(MAGIC)
    assert not path.with_name(path.name + ".tmp").exists()
    loaded = Bm25Index.load(path, Bm25Options(compact_fraction=1.0))
    assert loaded.tombstones == 0
    assert loaded.ids().tolist() == sorted(rest)
    for query in random_queries(12, 30):
        assert_same(loaded.search(query, 10), reference(rest, query, 10))
    # a loaded index takes updates like a built one
    loaded.add([5000], ["insulin therapy trial"])
    loaded.remove([150])
    rest[5000] = "insulin therapy trial"
    del rest[150]
    for query in ["insulin trial", *random_queries(12, 10)]:
        assert_same(loaded.search(query, 10), reference(rest, query, 10))
    loaded.save(path)  # replaces the old file
    assert Bm25Index.load(path).ids().tolist() == sorted(rest)


def test_empty_index_round_trip(tmp_path: Path) -> None:
    Bm25Index().save(tmp_path / "empty.bm25")
    loaded = Bm25Index.load(tmp_path / "empty.bm25")
    assert len(loaded) == 0
    assert loaded.search("cell", 5) == []


def saved(tmp_path: Path) -> Path:
    path = tmp_path / "keywords.bm25"
    build(dict(enumerate(random_corpus(13, 50), start=1))).save(path)
    return path


def rewrite_body(path: Path, change: bytes, at: int) -> None:
    """Overwrite body bytes and fix the checksum: only the structural checks can object."""
    body = bytearray(path.read_bytes()[HEADER.size :])
    body[at : at + len(change)] = change
    digest = hashlib.sha256(body).digest()
    header = HEADER.pack(MAGIC, FORMAT_VERSION, TOKENIZER_VERSION, len(body), digest)
    path.write_bytes(header + bytes(body))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d[: len(d) // 2], "torn"),
        (lambda d: d[:10], "shorter than its header"),
        (lambda d: b"", "shorter than its header"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "checksum"),
        (lambda d: d[:60] + bytes([d[60] ^ 0x40]) + d[61:], "checksum"),
        (lambda d: b"NOTMAGIC" + d[8:], "not a keyword index"),
        (lambda d: d[:8] + struct.pack("<I", 99) + d[12:], "format version 99"),
        (lambda d: d[:12] + struct.pack("<I", 42) + d[16:], "tokenizer version 42"),
        (lambda d: d + b"junk", "torn"),
    ],
)
def test_corrupt_files_are_refused(
    tmp_path: Path, damage: Callable[[bytes], bytes], message: str
) -> None:
    path = saved(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptIndex, match=message):
        Bm25Index.load(path)
    index, loaded = Bm25Index.open(path)
    assert not loaded and len(index) == 0


def test_inconsistent_contents_are_refused_even_with_a_valid_checksum(tmp_path: Path) -> None:
    path = saved(tmp_path)
    body = path.read_bytes()[HEADER.size :]
    (meta_len,) = struct.unpack_from("<I", body)
    rewrite_body(path, b"#", 4)  # table of contents no longer JSON
    with pytest.raises(CorruptIndex, match="table of contents"):
        Bm25Index.load(path)
    path = saved(tmp_path)
    # the ids array starts right after the table of contents (8-byte aligned): make id 2 == id 1
    start = 4 + meta_len + (-(4 + meta_len) % 8)
    rewrite_body(path, struct.pack("<q", 1), start + 8)
    with pytest.raises(CorruptIndex, match="strictly increasing"):
        Bm25Index.load(path)


def test_another_unicode_version_means_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = saved(tmp_path)
    monkeypatch.setattr(unicodedata, "unidata_version", "99.0.0")
    with pytest.raises(CorruptIndex, match="Unicode"):
        Bm25Index.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CorruptIndex):
        Bm25Index.load(tmp_path / "absent.bm25")
    index, loaded = Bm25Index.open(tmp_path / "absent.bm25")
    assert not loaded and len(index) == 0
    assert issubclass(CorruptIndex, StorageError)


def test_open_loads_a_good_file(tmp_path: Path) -> None:
    path = saved(tmp_path)
    index, loaded = Bm25Index.open(path)
    assert loaded and len(index) == 50
    assert index.path == path
    index.add([999], ["remembered path"])
    index.save()  # to the path it was opened from
    assert 999 in Bm25Index.load(path)


def test_open_or_rebuild_then_save(tmp_path: Path) -> None:
    path = tmp_path / "keywords.bm25"
    index, loaded = Bm25Index.open(path)
    assert not loaded and index.path == path
    index.add([1], ["cell"])
    index.save()
    assert Bm25Index.load(path).ids().tolist() == [1]
    Bm25Index().save()  # no path anywhere: nothing to do


def test_save_failure_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError):
        build({1: "cell"}).save(blocker / "keywords.bm25")


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrent_writes_and_searches() -> None:
    index = build(dict(enumerate(random_corpus(14, 200), start=1)))
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(1000, 1300):
                index.add([i], [f"cell growth signaling {i}"])
                if i % 3 == 0:
                    index.remove([i - 1])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(300):
                hits = index.search("cell growth signaling", 20)
                assert len(hits) == 20
                assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
