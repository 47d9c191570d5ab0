"""The float vector file (``index.vector_file``): positional records by row id, misses for
what it never held, hostile ids skipped."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from index.vector_file import MAX_ID, FloatVectorFile
from node.errors import StorageError

DIM = 8


def test_vectors_round_trip_by_id_and_unwritten_slots_are_misses(tmp_path: Path) -> None:
    store = FloatVectorFile(tmp_path / "v.f32", DIM)
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((3, DIM)).astype(np.float32)
    store.write(np.array([5, 0, 9], dtype=np.int64), rows)
    got, found = store.read(np.array([9, 1, 5, 0, 40, -1], dtype=np.int64))
    assert found.tolist() == [True, False, True, True, False, False]
    np.testing.assert_array_equal(got[[0, 2, 3]], rows[[2, 0, 1]])
    assert not got[[1, 4, 5]].any()
    store.write(np.array([5], dtype=np.int64), rows[:1] * 2)  # a later write replaces
    np.testing.assert_array_equal(store.read(np.array([5]))[0][0], rows[0] * 2)
    store.flush()
    store.close()
    reopened = FloatVectorFile(tmp_path / "v.f32", DIM)
    np.testing.assert_array_equal(reopened.read(np.array([0]))[0][0], rows[1])
    reopened.close()


def test_ids_out_of_range_are_never_written_and_a_closed_file_misses(tmp_path: Path) -> None:
    store = FloatVectorFile(tmp_path / "v.f32", DIM)
    row = np.ones((2, DIM), dtype=np.float32)
    store.write(np.array([MAX_ID + 1, -3], dtype=np.int64), row)
    assert (tmp_path / "v.f32").stat().st_size == 0
    store.write(np.array([2], dtype=np.int64), row[:1])
    store.close()
    got, found = store.read(np.array([2], dtype=np.int64))
    assert not found.any() and not got.any()
    store.write(np.array([3], dtype=np.int64), row[:1])  # a no-op once closed
    store.flush()


def test_an_unopenable_path_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "dir.f32").mkdir()
    with pytest.raises(StorageError, match="float vector file"):
        FloatVectorFile(tmp_path / "dir.f32", DIM)


def test_a_failed_write_gives_the_file_up_instead_of_failing_the_caller(tmp_path: Path) -> None:
    store = FloatVectorFile(tmp_path / "v.f32", DIM)
    row = np.ones((1, DIM), dtype=np.float32)
    store.write(np.array([1], dtype=np.int64), row)
    # the descriptor turns read-only under it (a full disk, an I/O error: pwrite fails)
    assert store._fd is not None
    os.close(store._fd)
    store._fd = os.open(tmp_path / "v.f32", os.O_RDONLY)
    store.write(np.array([2], dtype=np.int64), row)  # no exception
    assert not store.usable and not (tmp_path / "v.f32").exists()
    got, found = store.read(np.array([1, 2], dtype=np.int64))
    assert not found.any() and not got.any()  # misses from now on: the catalog answers
    store.forget(np.array([1], dtype=np.int64))
    store.flush()
    store.close()
