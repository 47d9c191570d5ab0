"""The same assertions against the in-memory fake and every FAISS layout (flat, HNSW with float
vectors, HNSW with 8-bit codes re-ranked from the catalog's floats)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from index.faiss_index import FaissIndex
from node.errors import StorageError
from node.memory import MemoryVectorIndex
from node.ports import Ids, VectorIndex, Vectors

DIM = 32

Factory = Callable[[Path], VectorIndex]


class Catalogued(FaissIndex):
    """A compressed FaissIndex whose float vectors live in a dict, written before the index as
    the node's catalog is (the catalog keeps them after a removal, as it does for hidden facts)."""

    def __init__(
        self, dimension: int, path: Path | None, float_file: Path | None = None, **options: int
    ) -> None:
        self.floats: dict[int, np.ndarray] = {}
        super().__init__(
            dimension,
            path,
            compression="sq8",
            exact_vectors=self.lookup,
            float_file=float_file,
            **options,
        )

    def lookup(self, ids: Ids) -> Vectors:
        missing = [i for i in ids.tolist() if i not in self.floats]
        if missing:
            raise StorageError(f"catalog has no vectors for ids {missing[:5]}")
        return np.stack([self.floats[i] for i in ids.tolist()]).astype(np.float32)

    def add(self, ids: Ids, vectors: Vectors) -> None:
        self.floats.update(zip(ids.tolist(), np.asarray(vectors, dtype=np.float32), strict=True))
        super().add(ids, vectors)


FACTORIES: dict[str, Factory] = {
    "memory": lambda p: MemoryVectorIndex(DIM),
    "faiss-flat": lambda p: FaissIndex(DIM, p / "v.faiss"),
    "faiss-hnsw": lambda p: FaissIndex(DIM, p / "v.faiss", hnsw_threshold=1, exact_filter_limit=3),
    "faiss-hnsw-sq8": lambda p: Catalogued(
        DIM, p / "v.faiss", hnsw_threshold=1, exact_filter_limit=3
    ),
    "faiss-hnsw-sq8-float-file": lambda p: Catalogued(
        DIM, p / "v.faiss", p / "v.f32", hnsw_threshold=1, exact_filter_limit=3
    ),
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
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    for index in (FaissIndex(dim, None), Catalogued(dim, None)):  # the node's defaults
        for start in range(0, n, 5_000):
            chunk = np.arange(start, start + 5_000, dtype=np.int64)
            index.add(chunk, data[start : start + 5_000])
        assert index.kind in ("hnsw", "hnsw-sq8")
        found = [[h.id for h in index.search(q, 10)] for q in queries]
        recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
        assert recall >= 0.95, (index.kind, recall)


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


def test_compressed_scores_are_exact_and_survive_compaction_and_reload(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    index = Catalogued(DIM, tmp_path / "v.faiss", hnsw_threshold=10)
    vectors = unit(rng, 200)
    index.add(np.arange(200, dtype=np.int64), vectors)
    assert index.kind == "hnsw-sq8"
    query = unit(rng, 1)[0]
    exact = sorted(range(200), key=lambda i: -float(vectors[i] @ query))[:10]
    hits = index.search(query, 10)
    assert [h.id for h in hits] == exact
    np.testing.assert_allclose([h.score for h in hits], vectors[exact] @ query, atol=1e-6)
    # removing over a fifth compacts the graph, which reads the floats back from the catalog
    reads = len(index.floats)
    looked_up = count_catalog_reads(index)
    index.remove(np.arange(0, 200, 3, dtype=np.int64))
    assert sorted(set(looked_up)) == [i for i in range(reads) if i % 3]
    index.save()
    again = Catalogued(DIM, tmp_path / "v.faiss", hnsw_threshold=10)
    again.floats.update(index.floats)
    assert again.kind == "hnsw-sq8"
    kept = [i for i in range(200) if i % 3]
    assert again.ids().tolist() == kept
    best = sorted(kept, key=lambda i: -float(vectors[i] @ query))[:10]
    hits = again.search(query, 10)
    assert [h.id for h in hits] == best
    np.testing.assert_allclose([h.score for h in hits], vectors[best] @ query, atol=1e-6)


def test_an_approximate_search_ranks_like_the_exact_one(make: Factory, tmp_path: Path) -> None:
    """``exact=False`` (a hybrid query's dense pool): every index gives k hits in (score desc,
    id asc) order, the same restrictions apply, and the scores stay within a compressed
    index's quantization error of the exact ones; an uncompressed index is exact anyway."""
    rng = np.random.default_rng(21)
    index = make(tmp_path)
    vectors = unit(rng, 300)
    index.add(np.arange(300, dtype=np.int64), vectors)
    query = unit(rng, 1)[0]
    exact = index.search(query, 30)
    approx = index.search(query, 30, exact=False)
    assert len(approx) == 30
    assert [(-h.score, h.id) for h in approx] == sorted((-h.score, h.id) for h in approx)
    true = {h.id: float(vectors[h.id] @ query) for h in approx}
    assert all(abs(h.score - true[h.id]) < 0.02 for h in approx)
    assert len({h.id for h in approx} & {h.id for h in exact[:10]}) >= 9
    if index.kind != "hnsw-sq8":
        assert approx == exact
    allowed = np.arange(0, 300, 2, dtype=np.int64)
    excluded = np.arange(0, 300, 3, dtype=np.int64)
    restricted = index.search(query, 10, allowed, excluded, exact=False)
    assert restricted and all(h.id % 2 == 0 and h.id % 3 for h in restricted)


def test_an_approximate_search_reads_no_float_vector(tmp_path: Path) -> None:
    """What ``exact=False`` saves: the re-rank's reads (and the relevance of the final few
    reads only theirs)."""
    rng = np.random.default_rng(22)
    index = Catalogued(DIM, tmp_path / "v.faiss", tmp_path / "v.f32", hnsw_threshold=10)
    index.add(np.arange(300, dtype=np.int64), unit(rng, 300))
    assert index._floats is not None
    read: list[int] = []
    file_read = index._floats.read

    def counted(ids: Ids) -> tuple[Vectors, np.ndarray]:
        read.extend(ids.tolist())
        return file_read(ids)

    index._floats.read = counted  # type: ignore[method-assign]
    query = unit(rng, 1)[0]
    hits = index.search(query, 100, exact=False)
    assert len(hits) == 100 and read == []
    top = np.array([h.id for h in hits[:10]], dtype=np.int64)
    index.similarity(query, top)
    assert sorted(read) == sorted(top.tolist())
    index.search(query, 100)
    assert len(read) == 10 + 100 + index._rerank_margin


def test_changing_the_compression_rebuilds_the_index_at_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    vectors = unit(rng, 100)
    ids = np.arange(100, dtype=np.int64)
    plain = FaissIndex(DIM, tmp_path / "v.faiss", hnsw_threshold=10)
    plain.add(ids, vectors)
    plain.save()
    assert plain.kind == "hnsw"
    table = dict(zip(ids.tolist(), vectors, strict=True))

    def lookup(wanted: Ids) -> Vectors:
        return np.stack([table[i] for i in wanted.tolist()])

    packed = FaissIndex(
        DIM, tmp_path / "v.faiss", hnsw_threshold=10, compression="sq8", exact_vectors=lookup
    )
    assert packed.kind == "hnsw-sq8" and packed.ids().tolist() == ids.tolist()
    assert packed.search(vectors[42], 1)[0].id == 42
    packed.save()
    unpacked = FaissIndex(DIM, tmp_path / "v.faiss", hnsw_threshold=10)
    assert unpacked.kind == "hnsw" and unpacked.ids().tolist() == ids.tolist()
    assert unpacked.search(vectors[42], 1)[0].id == 42


def test_a_candidate_gone_from_the_catalog_does_not_fail_the_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    index = Catalogued(DIM, None, hnsw_threshold=10)
    vectors = unit(rng, 50)
    index.add(np.arange(50, dtype=np.int64), vectors)
    del index.floats[7]  # erased from the catalog between the graph walk and the re-rank
    hits = index.search(vectors[7], 5)
    assert hits[0].id == 7 and len(hits) == 5  # the codes' order; the catalog drops row 7 later


def test_a_compressed_index_needs_the_float_vectors() -> None:
    with pytest.raises(ValueError, match="exact_vectors"):
        FaissIndex(DIM, None, compression="sq8")
    with pytest.raises(ValueError, match="compression"):
        FaissIndex(DIM, None, compression="pq")


def test_the_relevance_of_re_ranked_hits_reuses_their_float_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    index = Catalogued(DIM, None, hnsw_threshold=1)
    vectors = unit(rng, 200)
    index.add(np.arange(200, dtype=np.int64), vectors)
    reads: list[list[int]] = []
    lookup = index.lookup

    def counted(ids: Ids) -> Vectors:
        reads.append(ids.tolist())
        return lookup(ids)

    index._exact = counted
    query = unit(rng, 1)[0]
    hits = index.search(query, 5)
    assert len(reads) == 1  # the re-rank
    top = np.array([h.id for h in hits], dtype=np.int64)
    got = index.similarity(query, np.append(top, 199 if 199 not in top else 198))
    np.testing.assert_allclose(got[:5], vectors[top] @ query, atol=1e-6)
    assert len(reads) == 2 and len(reads[1]) == 1  # only the id the re-rank had not read
    index.add(np.array([500], dtype=np.int64), unit(rng, 1))  # a change: the cache is void
    index.search(query, 5)
    index.remove(np.array([3], dtype=np.int64))
    index.similarity(query, top)
    assert len(reads[-1]) == len([i for i in top.tolist() if i != 3])


def count_catalog_reads(index: Catalogued) -> list[int]:
    """Route ``index``'s catalog reads through a counter: the ids it reads, in order."""
    reads: list[int] = []
    lookup = index.lookup

    def counted(ids: Ids) -> Vectors:
        reads.extend(ids.tolist())
        return lookup(ids)

    index._exact = counted
    return reads


def test_the_float_file_answers_the_re_rank_and_survives_a_reload(tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    index = Catalogued(DIM, tmp_path / "v.faiss", tmp_path / "v.f32", hnsw_threshold=10)
    vectors = unit(rng, 300)
    index.add(np.arange(300, dtype=np.int64), vectors)
    reads = count_catalog_reads(index)
    query = unit(rng, 1)[0]
    exact = sorted(range(300), key=lambda i: -float(vectors[i] @ query))[:10]
    hits = index.search(query, 10)
    assert [h.id for h in hits] == exact and reads == []  # every float came from the file
    np.testing.assert_allclose([h.score for h in hits], vectors[exact] @ query, atol=1e-6)
    index.save()
    index.close()
    again = Catalogued(DIM, tmp_path / "v.faiss", tmp_path / "v.f32", hnsw_threshold=10)
    again.floats.update(index.floats)
    reads = count_catalog_reads(again)
    assert [h.id for h in again.search(query, 10)] == exact and reads == []


def test_a_float_file_that_lacks_vectors_is_read_through_from_the_catalog(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(15)
    vectors = unit(rng, 300)
    ids = np.arange(300, dtype=np.int64)
    # built without a float file (a data directory from before it), then opened with one
    first = Catalogued(DIM, tmp_path / "v.faiss", hnsw_threshold=10)
    first.add(ids, vectors)
    first.save()
    index = Catalogued(DIM, tmp_path / "v.faiss", tmp_path / "v.f32", hnsw_threshold=10)
    index.floats.update(first.floats)
    reads = count_catalog_reads(index)
    query = unit(rng, 1)[0]
    exact = sorted(range(300), key=lambda i: -float(vectors[i] @ query))[:10]
    assert [h.id for h in index.search(query, 10)] == exact
    first_reads = len(reads)
    assert first_reads >= 10  # the misses came from the catalog ...
    assert [h.id for h in index.search(query, 10)] == exact
    assert len(reads) == first_reads  # ... and were written back: the same search reads none
    # a torn file (cut mid-record) is a miss for what it lost, never a wrong vector
    with open(tmp_path / "v.f32", "r+b") as fh:
        fh.truncate(150 * DIM * 4 + 7)
    hits = index.search(query, 10)
    assert [h.id for h in hits] == exact
    np.testing.assert_allclose([h.score for h in hits], vectors[exact] @ query, atol=1e-6)


def test_a_removed_vector_leaves_the_float_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(16)
    index = Catalogued(DIM, tmp_path / "v.faiss", tmp_path / "v.f32", hnsw_threshold=10)
    vectors = unit(rng, 50)
    index.add(np.arange(50, dtype=np.int64), vectors)
    record = DIM * 4
    data = (tmp_path / "v.f32").read_bytes()
    assert data[7 * record : 8 * record] == vectors[7].tobytes()
    index.remove(np.array([7], dtype=np.int64))  # e.g. an erasure
    data = (tmp_path / "v.f32").read_bytes()
    assert data[7 * record : 8 * record] == bytes(record)
    assert vectors[7].tobytes() not in data
    assert all(h.id != 7 for h in index.search(vectors[7], 10))
    index.add(np.array([7], dtype=np.int64), vectors[8:9])  # the id back, with another vector
    assert (tmp_path / "v.f32").read_bytes()[7 * record : 8 * record] == vectors[8].tobytes()


def test_an_index_without_compression_drops_a_float_file_it_would_not_maintain(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(17)
    packed = Catalogued(DIM, tmp_path / "v.faiss", tmp_path / "v.f32", hnsw_threshold=10)
    packed.add(np.arange(20, dtype=np.int64), unit(rng, 20))
    packed.save()
    packed.close()
    assert (tmp_path / "v.f32").stat().st_size > 0
    # switched to floats in RAM: erasures would no longer reach the file, so it goes
    FaissIndex(DIM, tmp_path / "v.faiss", hnsw_threshold=10, float_file=tmp_path / "v.f32")
    assert not (tmp_path / "v.f32").exists()


def test_an_index_whose_float_file_fails_keeps_adding_removing_and_answering_exactly(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(18)
    index = Catalogued(DIM, tmp_path / "v.faiss", tmp_path / "v.f32", hnsw_threshold=10)
    vectors = unit(rng, 60)
    index.add(np.arange(50, dtype=np.int64), vectors[:50])
    floats = index._floats
    assert floats is not None and floats._fd is not None
    os.close(floats._fd)  # writes fail from here on (a full disk)
    floats._fd = os.open(tmp_path / "v.f32", os.O_RDONLY)
    index.add(np.arange(50, 60, dtype=np.int64), vectors[50:])  # ingest goes on
    index.remove(np.array([3], dtype=np.int64))  # and erasure
    assert not (tmp_path / "v.f32").exists()
    query = unit(rng, 1)[0]
    kept = [i for i in range(60) if i != 3]
    best = sorted(kept, key=lambda i: -float(vectors[i] @ query))[:10]
    hits = index.search(query, 10)  # exact, from the catalog
    assert [h.id for h in hits] == best
    np.testing.assert_allclose([h.score for h in hits], vectors[best] @ query, atol=1e-6)
    index.save()


def test_re_ranked_vectors_read_after_a_change_are_not_reused(tmp_path: Path) -> None:
    rng = np.random.default_rng(19)
    index = Catalogued(DIM, None, hnsw_threshold=1)
    vectors = unit(rng, 40)
    index.add(np.arange(40, dtype=np.int64), vectors)
    reads = count_catalog_reads(index)
    query = unit(rng, 1)[0]
    ids = np.arange(10, dtype=np.int64)
    stale = index._changes - 1  # labels read before the last change
    index._rerank(query, ids, np.zeros(10, dtype=np.float32), 5, stale)
    before = len(reads)
    index.similarity(query, ids[:5])
    assert len(reads) == before + 5  # read again, not taken from the re-rank
    index._rerank(query, ids, np.zeros(10, dtype=np.float32), 5, index._changes)
    before = len(reads)
    index.similarity(query, ids[:5])
    assert len(reads) == before  # current labels: reused
