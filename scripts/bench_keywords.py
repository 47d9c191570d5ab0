"""Keyword search engines compared in one run: SQLite FTS5 (today's catalog query, the baseline),
index.bm25_index, tantivy and bm25s, on the same tokens.

    .venv/bin/python scripts/bench_keywords.py                  # SciFact 5,183 + synthetic 100k
    .venv/bin/python scripts/bench_keywords.py --n 20000 --skip tantivy

Every engine ranks the same terms: documents and queries go through index.bm25_tokens'
tokenizer (FTS5's porter/unicode61/remove_diacritics 2, stopwords dropped from queries as
index.keywords.fts_query does); FTS5 tokenizes for itself and gets fts_query's query.
tantivy indexes the stems with its whitespace tokenizer (frequencies, no positions) and ids in
a fast field; bm25s gets the token lists (Lucene IDF, k1 1.2, b 0.75; numpy backend, and numba
when it imports). tantivy and bm25s are optional: missing ones are reported as skipped.

Per engine and corpus, a fresh subprocess builds the index (time includes tokenizing), saves
it, and measures RSS growth (after - before build), disk size, load time, and incremental
add / remove of 1,000 documents where the engine can. Then one process loads every saved
index and times the 300 SciFact test claims, top 10 and top 100, the engines interleaved per
query (so a busy machine slows all of them alike), each query repeated --repeats times: p50 /
p99 over all timings, and p99 of each query's best time (the engine without the noise).
SciFact also gets nDCG@10 (qrels of scripts/bench_quality.py) and how often the engine's top
10 ids equal FTS5's. Writes bench-out/keywords.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _bench import (
    machine,
    report,
    rss_mib,
    scifact_docs,
    scifact_facts,
    scifact_test_queries,
    synthetic_facts,
)

from index.bm25_index import Bm25Index
from index.bm25_tokens import query_terms, tokenize
from index.keywords import fts_query

ENGINES = ["fts5", "bm25_index", "tantivy", "bm25s-numpy", "bm25s-numba"]
CHANGES = 1000  # documents added and removed in the incremental test

Ranked = list[tuple[int, float]]


# -- engines ------------------------------------------------------------------------------------


class Fts5:
    """Today's schema and query: an external-content FTS5 table over ``facts`` like the
    catalog's, queried as index.sqlite_catalog.keyword_search does (superseded skipped)."""

    name = "fts5"

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path / "fts.sqlite3", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS facts (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
            "CREATE VIRTUAL TABLE IF NOT EXISTS facts_fts USING fts5(text, content='facts', "
            "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');"
            "CREATE TABLE IF NOT EXISTS superseded (fact_id INTEGER PRIMARY KEY);"
        )

    def build(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        self.add(ids, texts)

    def add(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        rows = list(zip(ids, texts, strict=True))
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO facts (id, text) VALUES (?, ?)", rows)
        self.db.executemany("INSERT INTO facts_fts (rowid, text) VALUES (?, ?)", rows)
        self.db.execute("COMMIT")

    def remove(self, ids: Sequence[int]) -> None:
        self.db.execute("BEGIN")
        for fact_id in ids:
            (text,) = self.db.execute("SELECT text FROM facts WHERE id = ?", (fact_id,)).fetchone()
            self.db.execute(
                "INSERT INTO facts_fts (facts_fts, rowid, text) VALUES ('delete', ?, ?)",
                (fact_id, text),
            )
            self.db.execute("DELETE FROM facts WHERE id = ?", (fact_id,))
        self.db.execute("COMMIT")

    def save(self) -> None:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def index_bytes(self) -> int:
        """The FTS5 shadow tables only (the catalog holds the text anyway)."""
        row = self.db.execute(
            "SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'facts_fts%'"
        ).fetchone()
        return int(row[0] or 0)

    def search(self, text: str, k: int) -> Ranked:
        match = fts_query(text)
        if match is None:
            return []
        rows = self.db.execute(
            "SELECT rowid, bm25(facts_fts) AS s FROM facts_fts WHERE facts_fts MATCH ? "
            "AND facts_fts.rowid NOT IN (SELECT fact_id FROM superseded) "
            "ORDER BY s, rowid LIMIT ?",
            (match, k),
        ).fetchall()
        return [(int(r[0]), -float(r[1])) for r in rows]


class Ours:
    name = "bm25_index"

    def __init__(self, path: Path) -> None:
        self.file = path / "keywords.bm25"
        self.index = Bm25Index.load(self.file) if self.file.exists() else Bm25Index()

    def build(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        self.index.add(ids, texts)

    def add(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        self.index.add(ids, texts)

    def remove(self, ids: Sequence[int]) -> None:
        self.index.remove(ids)

    def save(self) -> None:
        self.index.save(self.file)

    def search(self, text: str, k: int) -> Ranked:
        return [(h.id, h.score) for h in self.index.search(text, k)]


class Tantivy:
    name = "tantivy"

    def __init__(self, path: Path) -> None:
        import tantivy

        self.t = tantivy
        schema = tantivy.SchemaBuilder()
        schema.add_text_field("body", tokenizer_name="ws", index_option="freq")
        schema.add_integer_field("id", indexed=True, fast=True)
        self.schema = schema.build()
        self.index = tantivy.Index(self.schema, path=str(path))
        analyzer = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()
        self.index.register_tokenizer("ws", analyzer)
        self.writer: Any = None

    def _writer(self) -> Any:
        if self.writer is None:
            self.writer = self.index.writer(heap_size=128_000_000, num_threads=1)
        return self.writer

    def build(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        self.add(ids, texts)

    def add(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        writer = self._writer()
        for fact_id, text in zip(ids, texts, strict=True):
            writer.add_document(self.t.Document(id=int(fact_id), body=" ".join(tokenize(text))))
        writer.commit()
        self.index.reload()

    def remove(self, ids: Sequence[int]) -> None:
        writer = self._writer()
        for fact_id in ids:
            writer.delete_documents_by_term("id", int(fact_id))
        writer.commit()
        self.index.reload()

    def save(self) -> None:
        if self.writer is not None:
            self.writer.wait_merging_threads()
            self.writer = None

    def search(self, text: str, k: int) -> Ranked:
        t = self.t
        clauses = []
        for term, weight in query_terms(text).items():
            query = t.Query.term_query(self.schema, "body", term)
            if weight > 1:
                query = t.Query.boost_query(query, float(weight))
            clauses.append((t.Occur.Should, query))
        if not clauses:
            return []
        searcher = self.index.searcher()
        hits = searcher.search(t.Query.boolean_query(clauses), limit=k, count=False).hits
        ids = searcher.fast_field_values("id", [address for _, address in hits])
        return [(int(i), float(s)) for (s, _), i in zip(hits, ids, strict=True)]


class Bm25s:
    def __init__(self, path: Path, backend: str) -> None:
        import bm25s

        self.bm25s = bm25s
        self.backend = backend
        self.name = f"bm25s-{backend}"
        self.path = path
        self.ids = np.zeros(0, dtype=np.int64)
        self.retriever: Any = None
        if (path / "params.index.json").exists():
            self.retriever = bm25s.BM25.load(
                str(path), override_params={"backend": backend}, show_progress=False
            )
            self.ids = np.load(path / "ids.npy")
        self.vocab: dict[str, int] = {}

    def build(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        self._texts = list(texts)
        self.ids = np.asarray(ids, dtype=np.int64)
        self._index([tokenize(t) for t in texts])

    def _index(self, tokens: list[list[str]]) -> None:
        retriever = self.bm25s.BM25(k1=1.2, b=0.75, method="lucene", backend=self.backend)
        retriever.index(tokens, show_progress=False)
        self.retriever = retriever

    def add(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        """No incremental add: the whole corpus is indexed again."""
        self._texts += list(texts)
        self.ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)])
        self._index([tokenize(t) for t in self._texts])

    def remove(self, ids: Sequence[int]) -> None:
        """No removal: the corpus without them is indexed again."""
        keep = ~np.isin(self.ids, np.asarray(ids, dtype=np.int64))
        self._texts = [t for t, k in zip(self._texts, keep.tolist(), strict=True) if k]
        self.ids = self.ids[keep]
        self._index([tokenize(t) for t in self._texts])

    def save(self) -> None:
        self.retriever.save(str(self.path))
        np.save(self.path / "ids.npy", self.ids)

    def search(self, text: str, k: int) -> Ranked:
        vocab = self.retriever.vocab_dict
        tokens = [t for t, w in query_terms(text).items() if t in vocab for _ in range(w)]
        if not tokens:
            return []
        docs, scores = self.retriever.retrieve(
            [tokens], k=min(k, len(self.ids)), show_progress=False, n_threads=1
        )
        return [
            (int(self.ids[d]), float(s))
            for d, s in zip(docs[0].tolist(), scores[0].tolist(), strict=True)
            if s > 0
        ]


def make(name: str, path: Path) -> Any:
    if name == "fts5":
        return Fts5(path)
    if name == "bm25_index":
        return Ours(path)
    if name == "tantivy":
        return Tantivy(path)
    if name.startswith("bm25s-"):
        backend = name.split("-", 1)[1]
        if backend == "numba":
            import numba  # noqa: F401  (bm25s falls back silently; fail here instead)
        return Bm25s(path, backend)
    raise ValueError(name)


# -- corpus ---------------------------------------------------------------------------------------


def corpus(name: str, n: int) -> tuple[list[int], list[str], dict[int, str]]:
    """(ids, texts, id -> SciFact doc id) with ids 1..N like catalog row ids."""
    facts = scifact_facts() if name == "scifact" else synthetic_facts(n)
    ids = list(range(1, len(facts) + 1))
    doc_ids = {i: str(f["metadata"].get("doc_id", "")) for i, f in zip(ids, facts, strict=True)}
    return ids, [f["text"] for f in facts], doc_ids


def extra_texts(count: int) -> list[str]:
    """Texts for the incremental test: SciFact titles (not in either corpus as facts)."""
    titles = [d["title"] for d in scifact_docs()]
    return [f"{titles[i % len(titles)]} (added {i})" for i in range(count)]


# -- worker: build, memory, disk, load, incremental ------------------------------------------------


def worker(name: str, corpus_name: str, n: int, path: Path) -> dict[str, Any]:
    ids, texts, _ = corpus(corpus_name, n)
    gc.collect()
    before = rss_mib(os.getpid())
    engine = make(name, path)
    started = time.perf_counter()
    engine.build(ids, texts)
    build_s = time.perf_counter() - started
    gc.collect()
    rss = rss_mib(os.getpid()) - before
    started = time.perf_counter()
    engine.save()
    save_s = time.perf_counter() - started
    disk = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    if isinstance(engine, Fts5):
        disk = engine.index_bytes()
    # the timing phase reads a copy: the incremental test below changes the index
    shutil.copytree(path, query_copy(path))
    started = time.perf_counter()
    loaded = make(name, query_copy(path))
    loaded.search("warm up the loaded index", 10)
    load_s = time.perf_counter() - started
    del loaded
    result: dict[str, Any] = {
        "build_s": round(build_s, 3),
        "rss_mib": round(rss, 1),
        "save_s": round(save_s, 3),
        "disk_mib": round(disk / 2**20, 2),
        "load_s": round(load_s, 3),
    }
    new_ids = list(range(len(ids) + 1, len(ids) + CHANGES + 1))
    new_texts = extra_texts(CHANGES)
    started = time.perf_counter()
    engine.add(new_ids, new_texts)
    result["add_1000_s"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    engine.remove(new_ids)
    result["remove_1000_s"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    engine.add(new_ids[:1], new_texts[:1])
    result["add_1_s"] = round(time.perf_counter() - started, 4)
    return result


def query_copy(path: Path) -> Path:
    return path.with_name(path.name + "-query")


def run_worker(name: str, corpus_name: str, n: int, path: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", name, corpus_name, str(n), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return {"skipped": tail[0] if tail else f"exit {proc.returncode}"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- latency and quality ---------------------------------------------------------------------------


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    return dcg / sum(rel / math.log2(rank + 2) for rank, rel in enumerate(ideal))


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def measure(
    engines: dict[str, Any], corpus_name: str, n: int, repeats: int
) -> dict[str, dict[str, Any]]:
    queries, qrels = scifact_test_queries()
    _, _, doc_ids = corpus(corpus_name, n) if corpus_name == "scifact" else ([], [], {})
    out: dict[str, dict[str, Any]] = {name: {} for name in engines}
    texts = list(queries.values())
    for k in (10, 100):
        for text in texts[:30]:
            for engine in engines.values():
                engine.search(text, k)
        times: dict[str, list[list[float]]] = {name: [] for name in engines}
        found: dict[str, list[Ranked]] = {name: [] for name in engines}
        for text in texts:
            for name, engine in engines.items():
                runs = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    hits = engine.search(text, k)
                    runs.append((time.perf_counter() - started) * 1000)
                times[name].append(runs)
                found[name].append(hits)
        for name in engines:
            flat = [t for runs in times[name] for t in runs]
            best = [min(runs) for runs in times[name]]
            out[name][f"top{k}_ms"] = {
                "p50": pct(flat, 50),
                "p99": pct(flat, 99),
                "best_p50": pct(best, 50),
                "best_p99": pct(best, 99),
            }
            if k == 10 and "fts5" in found:
                same = sum(
                    [i for i, _ in a] == [i for i, _ in b]
                    for a, b in zip(found[name], found["fts5"], strict=True)
                )
                out[name]["same_top10_as_fts5"] = f"{same}/{len(texts)}"
            if k == 100 and corpus_name == "scifact":
                scores = [
                    ndcg_at_10([doc_ids[i] for i, _ in hits], qrels[qid])
                    for qid, hits in zip(queries, found[name], strict=True)
                ]
                out[name]["ndcg@10"] = round(100 * sum(scores) / len(scores), 2)
    if "bm25_index" in engines:
        out["bm25_index"]["filtered_top100_ms"] = filtered(engines["bm25_index"].index, texts)
    return out


def filtered(index: Bm25Index, texts: list[str]) -> dict[str, dict[str, float]]:
    """index.bm25_index with the filters the node passes: metadata matches (allowed ids),
    superseded facts (excluded ids), and an arbitrary predicate; top 100, one run each."""
    ids = index.ids()
    rng = np.random.default_rng(0)
    cases: dict[str, dict[str, Any]] = {
        "allowed 50 % (array)": {"allowed": np.sort(rng.choice(ids, len(ids) // 2, False))},
        "allowed 1 % (array)": {"allowed": np.sort(rng.choice(ids, len(ids) // 100, False))},
        "excluded 1,000 (array)": {"excluded": np.sort(rng.choice(ids, 1000, False))},
        "allowed predicate (even ids)": {"allowed": lambda i: i % 2 == 0},
    }
    out = {}
    for case, kwargs in cases.items():
        times = []
        for text in texts:
            started = time.perf_counter()
            index.search(text, 100, **kwargs)
            times.append((time.perf_counter() - started) * 1000)
        out[case] = {"p50": pct(times, 50), "p99": pct(times, 99)}
    return out


# -- main ------------------------------------------------------------------------------------------

CAPABILITIES = {
    "fts5": {
        "incremental": "add / remove per row, transactional with the catalog",
        "persistence": "inside the catalog database (WAL)",
        "deletes": "'delete' command: df, N and lengths updated at once",
    },
    "bm25_index": {
        "incremental": "add / remove per id; replace on re-add",
        "persistence": "one file, atomic replace + fsync, SHA-256 checked; rebuild on any doubt",
        "deletes": "tombstone + df/N/length updated at once (exact); compaction past 25 %",
    },
    "tantivy": {
        "incremental": "add / delete-by-term, visible after commit + reload (segments)",
        "persistence": "segment directory, atomic commits (meta.json)",
        "deletes": "delete bitset per segment; df and avgdl keep deleted docs until a merge",
    },
    "bm25s-numpy": {
        "incremental": "none: every add or remove re-indexes the whole corpus",
        "persistence": "save/load of numpy arrays + JSON (not atomic)",
        "deletes": "none (re-index); weight_mask can hide documents at query time",
    },
}
CAPABILITIES["bm25s-numba"] = CAPABILITIES["bm25s-numpy"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000, help="synthetic corpus size")
    parser.add_argument("--repeats", type=int, default=3, help="timings per query and engine")
    parser.add_argument("--skip", nargs="*", default=[], choices=ENGINES)
    parser.add_argument("--worker", nargs=4, metavar=("ENGINE", "CORPUS", "N", "DIR"))
    args = parser.parse_args()
    if args.worker:
        name, corpus_name, n, path = args.worker
        print(json.dumps(worker(name, corpus_name, int(n), Path(path))))
        return
    names = [e for e in ENGINES if e not in args.skip]
    results: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="bench-keywords-"))
    try:
        for corpus_name in ("scifact", f"synthetic-{args.n}"):
            base = corpus_name.split("-")[0]
            per: dict[str, Any] = {}
            engines: dict[str, Any] = {}
            for name in names:
                path = root / corpus_name / name
                path.mkdir(parents=True)
                print(f"[{corpus_name}] building {name} ...", file=sys.stderr, flush=True)
                per[name] = run_worker(name, base, args.n, path)
                if "skipped" not in per[name]:
                    engines[name] = make(name, query_copy(path))
            print(f"[{corpus_name}] timing {list(engines)} ...", file=sys.stderr, flush=True)
            for name, found in measure(engines, base, args.n, args.repeats).items():
                per[name].update(found)
            results[corpus_name] = per
            del engines
            gc.collect()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(results)
    for corpus_name, per in results.items():
        for case, t in per.get("bm25_index", {}).get("filtered_top100_ms", {}).items():
            print(f"{corpus_name} bm25_index top100 {case}: p50 {t['p50']} p99 {t['p99']} ms")
    versions = {}
    for package in ("tantivy", "bm25s", "numba"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = None
    report(
        "keywords",
        {
            "machine": machine(),
            "sqlite": sqlite3.sqlite_version,
            "versions": versions,
            "load_average": os.getloadavg(),
            "repeats": args.repeats,
            "capabilities": CAPABILITIES,
            "results": results,
        },
    )


def print_table(results: dict[str, Any]) -> None:
    head = (
        "| corpus | engine | nDCG@10 | top10 = FTS5 | top10 p50 / p99 ms | best-of p99 | "
        "top100 p50 / p99 ms | best-of p99 | build s | RSS MiB | disk MiB | load s | "
        "add 1k s | remove 1k s | add 1 s |"
    )
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for corpus_name, per in results.items():
        for name, r in per.items():
            if "skipped" in r:
                print(f"| {corpus_name} | {name} | skipped: {r['skipped']} |")
                continue
            t10, t100 = r["top10_ms"], r["top100_ms"]
            print(
                f"| {corpus_name} | {name} | {r.get('ndcg@10', '')} | "
                f"{r.get('same_top10_as_fts5', '')} | {t10['p50']} / {t10['p99']} | "
                f"{t10['best_p99']} | {t100['p50']} / {t100['p99']} | {t100['best_p99']} | "
                f"{r['build_s']} | {r['rss_mib']} | {r['disk_mib']} | {r['load_s']} | "
                f"{r['add_1000_s']} | {r['remove_1000_s']} | {r['add_1_s']} |"
            )


if __name__ == "__main__":
    main()
