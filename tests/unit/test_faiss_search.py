"""FAISS search mechanics of index.faiss_index: a search of one query runs on the calling thread
alone (no OpenMP team left spinning on the other cores) and leaves the thread's OpenMP setting
as it found it; the selector of left-out ids is reused while nothing changed and never leaves
out less than it must; searches go on while a save writes the index, writers wait for it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index import faiss_index
from index.faiss_index import FaissIndex

DIM = 16


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_every_search_asks_for_one_thread_and_restores_the_setting(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    faiss: Any = faiss_index.faiss
    index = FaissIndex(DIM, tmp_path / "v.faiss", hnsw_threshold=1 if kind == "hnsw" else 100)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((20, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index.add(np.arange(20, dtype=np.int64), vectors)
    assert index.kind == kind

    faiss.omp_set_num_threads(2)
    before = faiss.omp_get_max_threads()
    during: list[int] = []
    original = faiss_index._search_alone

    def spy(*args: Any) -> Any:
        # the setting the search itself runs under, read from inside the helper's call
        inner = args[0]

        class Probe:
            def search(self, *a: Any, **k: Any) -> Any:
                during.append(faiss.omp_get_max_threads())
                return inner.search(*a, **k)

        return original(Probe(), *args[1:])

    monkeypatch.setattr(faiss_index, "_search_alone", spy)
    hits = index.search(vectors[4], 3)
    assert hits[0].id == 4
    assert during == [1]
    assert faiss.omp_get_max_threads() == before


def test_left_out_ids_stay_out_while_the_selector_is_reused_and_rebuilt(tmp_path: Path) -> None:
    index = FaissIndex(DIM, tmp_path / "v.faiss", hnsw_threshold=1)
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((60, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index.add(np.arange(60, dtype=np.int64), vectors)

    def found(excluded: np.ndarray | None) -> set[int]:
        return {h.id for h in index.search(vectors[0], 60, None, excluded)}

    excluded = np.array([0, 1, 2], dtype=np.int64)
    excluded.flags.writeable = False  # as the catalog answers it
    assert found(excluded) == set(range(3, 60))
    selector = index._gone
    assert found(excluded) == set(range(3, 60))
    assert index._gone is selector  # the same array, nothing changed: reused

    other = np.array([0, 1, 2, 3], dtype=np.int64)  # another array: built again
    assert found(other) == set(range(4, 60))
    index.remove(np.array([10], dtype=np.int64))  # a tombstone joins
    assert found(other) == set(range(4, 60)) - {10}
    assert found(None) == set(range(60)) - {10}
    index.save()  # the graph is rebuilt without its tombstones
    assert found(other) == set(range(4, 60)) - {10}
    index.add(np.array([10], dtype=np.int64), vectors[10:11])  # back again
    assert found(other) == set(range(4, 60))


def test_searches_go_on_while_a_save_writes_and_writers_wait_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real: Any = faiss_index.faiss
    writing, release = threading.Event(), threading.Event()

    class SlowWrite:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def write_index(self, index: Any, path: str) -> None:
            writing.set()
            assert release.wait(30)
            real.write_index(index, path)

    path = tmp_path / "v.faiss"
    index = FaissIndex(DIM, path, hnsw_threshold=1)
    rng = np.random.default_rng(9)
    vectors = rng.standard_normal((40, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index.add(np.arange(30, dtype=np.int64), vectors[:30])
    monkeypatch.setattr(faiss_index, "faiss", SlowWrite())
    saver = threading.Thread(target=index.save)
    adder = threading.Thread(target=index.add, args=(np.arange(30, 40), vectors[30:]))
    try:
        saver.start()
        assert writing.wait(30)
        found: list[int] = []
        searcher = threading.Thread(
            target=lambda: found.extend(h.id for h in index.search(vectors[3], 1))
        )
        searcher.start()
        searcher.join(30)
        assert not searcher.is_alive(), "a search waited for the save"
        assert found == [3]
        adder.start()
        adder.join(0.5)
        assert adder.is_alive(), "an add changed the index while it was being written"
    finally:
        release.set()
        saver.join(30)
        adder.join(30)
    assert len(index) == 40  # the add went in after the save
    monkeypatch.setattr(faiss_index, "faiss", real)
    assert len(FaissIndex(DIM, path, hnsw_threshold=1)) == 30  # the save wrote the index before it


def test_a_query_searches_as_wide_as_its_ef_asks(tmp_path: Path) -> None:
    """``ef`` replaces the index's own search breadth for one call: a narrow setting misses
    neighbours that a wide ``ef`` finds, and the setting stays as it was for the next call."""
    dim, n, k = 32, 4000, 10
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((40, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = [set(np.argsort(-(vectors @ q))[:k].tolist()) for q in queries]
    index = FaissIndex(dim, None, hnsw_threshold=1, hnsw_m=4, ef_search=8)
    index.add(np.arange(n, dtype=np.int64), vectors)
    assert index.kind == "hnsw"

    def recall(ef: int | None) -> float:
        found = [{h.id for h in index.search(q, k, ef=ef)} for q in queries]
        return sum(len(f & t) for f, t in zip(found, truth, strict=True)) / (k * len(queries))

    narrow, wide = recall(None), recall(512)
    assert wide >= 0.95 and wide > narrow + 0.1, (narrow, wide)
    assert recall(None) == narrow  # one call's ef left the setting alone
    assert recall(1) == narrow  # never narrower than k: ef 1 walks as wide as ef 10 (= k)
