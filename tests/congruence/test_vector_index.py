"""The same assertions against the in-memory fake and both FAISS layouts (flat and HNSW)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from index.faiss_index import FaissIndex
from node.memory import MemoryVectorIndex
from node.ports import VectorIndex

DIM = 32

Factory = Callable[[Path], VectorIndex]

FACTORIES: dict[str, Factory] = {
    "memory": lambda p: MemoryVectorIndex(DIM),
    "faiss-flat": lambda p: FaissIndex(DIM, p / "v.faiss"),
    "faiss-hnsw": lambda p: FaissIndex(DIM, p / "v.faiss", hnsw_threshold=1, exact_filter_limit=3),
}


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest) -> Factory:
    return FACTORIES[request.param]


def test_add_search_remove(make: Factory, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    index = make(tmp_path)
    vectors = unit(rng, 50)
    ids = np.arange(100, 150, dtype=np.int64)
    index.add(ids, vectors)
    assert len(index) == 50
    assert index.ids().tolist() == ids.tolist()
    for row in (0, 17, 49):
        hits = index.search(vectors[row], 3)
        assert hits[0].id == 100 + row
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[0].score >= hits[1].score >= hits[2].score
    index.remove(np.array([117], dtype=np.int64))
    assert len(index) == 49
    assert 117 not in index.ids().tolist()
    assert all(h.id != 117 for h in index.search(vectors[17], 10))


def test_allowed_ids_restrict_the_search(make: Factory, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    index = make(tmp_path)
    vectors = unit(rng, 40)
    index.add(np.arange(40, dtype=np.int64), vectors)
    for allowed in ([5], [3, 30, 33], list(range(0, 40, 2))):
        hits = index.search(vectors[1], 5, np.array(allowed, dtype=np.int64))
        assert {h.id for h in hits} <= set(allowed)
        assert len(hits) == min(5, len(allowed))
        exact = sorted(allowed, key=lambda i: -float(vectors[i] @ vectors[1]))[:5]
        assert [h.id for h in hits] == exact
    assert index.search(vectors[1], 5, np.array([], dtype=np.int64)) == []


def test_excluded_ids_are_never_returned(make: Factory, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    index = make(tmp_path)
    vectors = unit(rng, 40)
    index.add(np.arange(40, dtype=np.int64), vectors)
    excluded = np.array([1, 2, 3, 17], dtype=np.int64)
    hits = index.search(vectors[1], 5, excluded=excluded)
    assert len(hits) == 5 and not {h.id for h in hits} & {1, 2, 3, 17}
    exact = sorted(
        (i for i in range(40) if i not in {1, 2, 3, 17}),
        key=lambda i: -float(vectors[i] @ vectors[1]),
    )[:5]
    assert [h.id for h in hits] == exact
    both = index.search(vectors[1], 5, np.array([1, 2, 5, 6], dtype=np.int64), excluded)
    assert {h.id for h in both} == {5, 6}


def test_k_larger_than_the_index(make: Factory, tmp_path: Path) -> None:
    index = make(tmp_path)
    assert index.search(unit(np.random.default_rng(3), 1)[0], 5) == []
    index.add(np.array([7, 8], dtype=np.int64), unit(np.random.default_rng(3), 2))
    assert sorted(h.id for h in index.search(unit(np.random.default_rng(4), 1)[0], 10)) == [7, 8]


def test_save_and_reload_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for threshold in (10_000, 1):
        path = tmp_path / f"t{threshold}.faiss"
        index = FaissIndex(DIM, path, hnsw_threshold=threshold)
        vectors = unit(rng, 30)
        index.add(np.arange(30, dtype=np.int64), vectors)
        index.remove(np.array([4], dtype=np.int64))
        index.save()
        again = FaissIndex(DIM, path, hnsw_threshold=threshold)
        assert again.kind == index.kind
        assert again.ids().tolist() == [i for i in range(30) if i != 4]
        assert again.search(vectors[9], 1)[0].id == 9


def test_corrupt_index_file_starts_empty_for_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "v.faiss"
    path.write_bytes(b"not a faiss index")
    index = FaissIndex(DIM, path)
    assert len(index) == 0


def test_flat_becomes_hnsw_past_the_threshold(tmp_path: Path) -> None:
    index = FaissIndex(DIM, None, hnsw_threshold=100)
    rng = np.random.default_rng(6)
    index.add(np.arange(100, dtype=np.int64), unit(rng, 100))
    assert index.kind == "flat"
    index.add(np.arange(100, 101, dtype=np.int64), unit(rng, 1))
    assert index.kind == "hnsw"
    assert len(index) == 101


def embedding_like(
    rng: np.random.Generator, latent: np.ndarray, projection: np.ndarray, n: int
) -> np.ndarray:
    """Clusters in a 32-d latent space projected to 384-d plus noise, normalized: like
    sentence embeddings, the data has a low intrinsic dimension. (Isotropic noise in 384-d
    has none, and no ANN index reaches useful recall on it.) The real-model version of this
    test runs on SciFact embeddings in tests/integration/test_embedder.py."""
    z = latent[rng.integers(0, len(latent), n)] + 0.5 * rng.standard_normal((n, latent.shape[1]))
    x = z @ projection + 0.5 * rng.standard_normal((n, projection.shape[1]))
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def test_hnsw_recall_at_10_against_exact_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    dim, n = 384, 30_000
    latent, projection = rng.standard_normal((300, 32)), rng.standard_normal((32, dim))
    data = embedding_like(rng, latent, projection, n)
    queries = embedding_like(rng, latent, projection, 200)
    index = FaissIndex(dim, None, hnsw_threshold=20_000)  # the node's defaults
    for start in range(0, n, 5_000):
        index.add(np.arange(start, start + 5_000, dtype=np.int64), data[start : start + 5_000])
    assert index.kind == "hnsw"
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    found = [[h.id for h in index.search(q, 10)] for q in queries]
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.95, recall


def test_similarity_is_the_inner_product_with_each_stored_vector(
    make: Factory, tmp_path: Path
) -> None:
    rng = np.random.default_rng(9)
    index = make(tmp_path)
    vectors = unit(rng, 30)
    index.add(np.arange(30, dtype=np.int64), vectors)
    index.remove(np.array([4], dtype=np.int64))
    query = unit(rng, 1)[0]
    got = index.similarity(query, np.array([7, 4, 29, 999, 0], dtype=np.int64))
    assert got.dtype == np.float32 and got.shape == (5,)
    expected = [vectors[7] @ query, vectors[29] @ query, vectors[0] @ query]
    np.testing.assert_allclose(got[[0, 2, 4]], expected, atol=1e-5)
    assert np.isnan(got[1]) and np.isnan(got[3])  # removed, never held
    assert index.similarity(query, np.array([], dtype=np.int64)).shape == (0,)
