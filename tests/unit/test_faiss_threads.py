"""A FAISS search of one query runs on the calling thread alone (no OpenMP team left spinning
on the other cores) and leaves the thread's OpenMP setting as it found it."""

from __future__ import annotations

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
