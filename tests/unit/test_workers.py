"""node.workers.HotPool: the last thread to go idle takes the next job; bounded threads; results,
exceptions, context variables and cancellation reach the awaiter as with asyncio.to_thread."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from node.workers import HotPool, SearchRunner

pytestmark = pytest.mark.anyio

DEADLINE = 30.0  # generous: a slow machine still passes


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def whoami() -> int:
    return threading.get_ident()


async def test_jobs_one_at_a_time_all_run_on_one_thread() -> None:
    pool = HotPool(4)
    try:
        idents = {await pool.run(whoami) for _ in range(50)}
        assert len(idents) == 1
        assert idents != {threading.get_ident()}  # never the event loop's thread
        assert pool.threads == 1
    finally:
        pool.close()


async def test_the_last_thread_to_go_idle_takes_the_next_job() -> None:
    pool = HotPool(2)
    release_first, release_second = threading.Event(), threading.Event()

    def hold(until: threading.Event) -> int:
        assert until.wait(DEADLINE)
        return threading.get_ident()

    try:
        first = asyncio.ensure_future(pool.run(hold, release_first))
        second = asyncio.ensure_future(pool.run(hold, release_second))
        await wait_until(lambda: pool.threads == 2)
        release_second.set()
        second_thread = await second
        release_first.set()
        first_thread = await first
        assert first_thread != second_thread
        # the first job's thread went idle last: it is the hot one now
        assert await pool.run(whoami) == first_thread
    finally:
        pool.close()


async def test_at_most_size_threads() -> None:
    pool = HotPool(2)
    gate = threading.Event()

    def job(n: int) -> int:
        assert gate.wait(DEADLINE)
        return n

    try:
        futures = [asyncio.ensure_future(pool.run(job, n)) for n in range(8)]
        await wait_until(lambda: pool.threads == 2)
        gate.set()
        assert await asyncio.gather(*futures) == list(range(8))
        assert pool.threads == 2
    finally:
        pool.close()


async def test_waiting_jobs_start_in_arrival_order() -> None:
    pool = HotPool(1)
    gate = threading.Event()
    order: list[int] = []

    def job(n: int) -> None:
        assert gate.wait(DEADLINE)
        order.append(n)

    try:
        futures = [asyncio.ensure_future(pool.run(job, n)) for n in range(8)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*futures)
        assert order == list(range(8))
    finally:
        pool.close()


async def test_an_exception_reaches_the_awaiter_and_the_thread_serves_on() -> None:
    pool = HotPool(1)

    def fail() -> None:
        raise ValueError("boom")

    try:
        with pytest.raises(ValueError, match="boom"):
            await pool.run(fail)
        assert await pool.run(lambda: 42) == 42
    finally:
        pool.close()


async def test_jobs_see_the_callers_context_variables() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    pool = HotPool(1)
    try:
        var.set("request-7")
        assert await pool.run(var.get) == "request-7"
    finally:
        pool.close()


async def test_a_cancelled_awaiter_leaves_its_job_to_finish_and_the_pool_usable() -> None:
    pool = HotPool(1)
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        assert release.wait(DEADLINE)
        finished.set()
        return "late"

    try:
        task = asyncio.ensure_future(pool.run(slow))
        await wait_until(started.is_set)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert await pool.run(lambda: "next") == "next"
        assert finished.is_set()
    finally:
        pool.close()


async def test_close_fails_waiting_jobs_refuses_new_ones_and_stops_idle_threads() -> None:
    pool = HotPool(1, name="closing")
    gate = threading.Event()
    try:
        running = asyncio.ensure_future(pool.run(gate.wait, DEADLINE))
        waiting = asyncio.ensure_future(pool.run(lambda: "never"))
        await wait_until(lambda: pool.threads == 1)
        await asyncio.sleep(0)  # both submitted
        pool.close()
        pool.close()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            await waiting
        gate.set()
        assert await running is True  # a running job finishes
        with pytest.raises(RuntimeError, match="closed"):
            await pool.run(lambda: None)
        await wait_until(lambda: not any(t.name == "closing-1" for t in threading.enumerate()))
    finally:
        gate.set()
        pool.close()


def test_a_pool_needs_a_thread() -> None:
    with pytest.raises(ValueError):
        HotPool(0)


async def wait_until(condition: object, deadline: float = DEADLINE) -> None:
    assert callable(condition)
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.005)


async def test_the_runner_uses_the_loop_while_quiet_and_the_pool_while_a_write_runs() -> None:
    pool = HotPool(2, name="runner")
    writing = [False]
    runner = SearchRunner(pool, writing=lambda: writing[0])
    loop_thread = threading.get_ident()
    try:
        assert await runner.run(whoami) == loop_thread
        writing[0] = True
        assert await runner.run(whoami) != loop_thread
        writing[0] = False
        assert await runner.run(whoami) == loop_thread
    finally:
        pool.close()


async def test_the_runner_uses_the_pool_while_another_job_is_there() -> None:
    pool = HotPool(2, name="runner")
    writing = [True]
    runner = SearchRunner(pool, writing=lambda: writing[0])
    loop_thread = threading.get_ident()
    release = threading.Event()
    try:
        first = asyncio.ensure_future(runner.run(lambda: release.wait(DEADLINE)))
        await wait_until(lambda: pool.threads == 1)
        writing[0] = False  # the write is over, but the first job still runs on a thread
        second = await runner.run(whoami)
        assert second != loop_thread
        release.set()
        assert await first is True
        assert await runner.run(whoami) == loop_thread  # quiet again
    finally:
        release.set()
        pool.close()


async def test_the_runner_raises_what_the_job_raises_on_either_path() -> None:
    pool = HotPool(1, name="runner")
    writing = [False]
    runner = SearchRunner(pool, writing=lambda: writing[0])

    def fail() -> None:
        raise KeyError("gone")

    try:
        for busy in (False, True):
            writing[0] = busy
            with pytest.raises(KeyError):
                await runner.run(fail)
        writing[0] = False
        assert await runner.run(whoami) == threading.get_ident()  # the count came back to 0
    finally:
        pool.close()


async def test_overlapping_jobs_go_to_the_pool() -> None:
    pool = HotPool(2, name="runner")
    runner = SearchRunner(pool, writing=lambda: False)
    loop_thread = threading.get_ident()
    try:
        both = await asyncio.gather(runner.run(whoami), runner.run(whoami))
        assert loop_thread not in both
        assert await runner.run(whoami) == loop_thread  # alone again: the loop
    finally:
        pool.close()
