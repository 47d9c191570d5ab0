"""Where the blocking part of queries runs (ranking, catalog reads, proofs): on the event loop
when nothing can make it wait, else on worker threads, each job handed to the thread that went
idle last.

What it owns
    ``HotPool``: at most ``size`` daemon threads, started on demand, and ``run(fn, *args)``,
    which awaits ``fn(*args)`` on one of them from the event loop.
    ``SearchRunner``: the choice between the loop and the pool for each job.

Why the loop, when the node is quiet
    Handing a job to a thread and its result back costs two wake-ups across cores and the
    caches of a second core: a vector-in query at 100k took 2.1 ms p50 through a search
    thread and 1.6 ms on the loop (BENCHMARKS.md, "Query latency", stop 35). A job runs on
    the loop only when it is the only query job asked for (none other waiting, none on the
    threads) and no write holds the node's write lock. Every write to the search indexes
    runs under that ``asyncio.Lock`` (ingest, moderation, the index flusher), and no
    coroutine can take it while the loop runs the job, so the job meets no writer's lock: it
    cannot stall the loop behind an index save. Under write load, or while queries overlap,
    jobs go to the pool and the loop stays free to answer (503s included), so a flood of
    expensive queries cannot hold the loop either.

Why not ``asyncio.to_thread``
    The default executor wakes whichever idle thread its queue happens to hand a job to, so
    queries that come one at a time run on a different thread, and often a different core,
    each time: the FAISS graph's upper layers, the keyword kernel's buffers and SQLite's pages
    are cold in that core's caches (two nodes on the 2-core machine, blocks alternated: the
    server's search time 1.15 ms p50 on the default executor, 1.05 ms on one dedicated
    thread). A stack of idle threads (the last to finish is the first to wake) keeps one
    thread hot while queries come one at a time and brings in more only while they overlap.
    Queries also stop sharing the default executor with ingest, publishing and status reads:
    they never wait behind those for a thread.

Invariants
    - At most ``size`` threads; jobs beyond wait in arrival order and start as threads free up.
    - A job's result or exception reaches its awaiting coroutine through the loop it was
      submitted from. An awaiter that is cancelled does not stop its job (a thread cannot be
      interrupted); the result is dropped.
    - A job runs in a copy of the submitter's context variables, as with ``asyncio.to_thread``.
    - ``close`` is idempotent: running jobs finish, waiting ones fail with ``RuntimeError``,
      idle threads exit, and later ``run`` calls raise ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _Job:
    __slots__ = ("call", "future", "loop")

    def __init__(
        self, call: Callable[[], Any], loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]
    ) -> None:
        self.call = call
        self.loop = loop
        self.future = future

    def execute(self) -> tuple[Any, BaseException | None]:
        """The call's result, or what it raised (delivered to the awaiter, as to_thread
        does)."""
        try:
            return self.call(), None
        except BaseException as exc:
            return None, exc

    def settle(self, result: Any, exc: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(_settle, self.future, result, exc)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # the awaiter was cancelled
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class _Worker:
    __slots__ = ("job", "wake")

    def __init__(self) -> None:
        self.job: _Job | None = None
        self.wake = threading.Event()


class HotPool:
    def __init__(self, size: int, name: str = "search") -> None:
        if size < 1:
            raise ValueError("a pool needs at least one thread")
        self._size = size
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # a stack: the last to go idle wakes first
        self._backlog: deque[_Job] = deque()
        self._started = 0
        self._closed = False

    @property
    def threads(self) -> int:
        """Threads started so far (at most ``size``)."""
        return self._started

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread; its result, or its exception raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        self._submit(_Job(call, loop, future))
        return await future

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            waiting, self._backlog = list(self._backlog), deque()
        for worker in idle:
            worker.job = None
            worker.wake.set()
        for job in waiting:
            job.settle(None, RuntimeError(f"the {self._name} pool is closed"))

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self._name} pool is closed")
            if self._idle:
                worker = self._idle.pop()
                worker.job = job
                worker.wake.set()
                return
            if self._started >= self._size:
                self._backlog.append(job)
                return
            self._started += 1
            number = self._started
        thread = threading.Thread(
            target=self._serve, args=(_Worker(), job), name=f"{self._name}-{number}", daemon=True
        )
        thread.start()

    def _serve(self, worker: _Worker, job: _Job | None) -> None:
        while job is not None:
            result, exc = job.execute()
            # idle (or given the next waiting job) *before* the awaiter hears of the result:
            # a caller that submits again at once then finds this thread, still hot, on the
            # stack instead of starting another
            following, wait = self._after_job(worker)
            job.settle(result, exc)
            if wait:
                worker.wake.wait()
                following = worker.job
            job = following

    def _after_job(self, worker: _Worker) -> tuple[_Job | None, bool]:
        """What ``worker`` does next: the oldest waiting job; else wait on the idle stack for
        the job a later submit hands it (True); else stop (the pool is closed)."""
        with self._lock:
            if self._backlog:
                return self._backlog.popleft(), False
            if self._closed:
                return None, False
            worker.job = None
            worker.wake.clear()
            self._idle.append(worker)
            return None, True


class SearchRunner:
    """Runs query jobs on the event loop while the node is quiet (module docstring), else on
    ``pool``. ``writing`` says whether a write holds the node's write lock; every writer of
    the search indexes must hold it (the invariant the loop path rests on)."""

    def __init__(self, pool: HotPool, writing: Callable[[], bool]) -> None:
        self._pool = pool
        self._writing = writing
        #: Jobs between arrival and their end, wherever they run (a job on the threads counts
        #: until it returns); read and written on the event loop only.
        self._asking = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        self._asking += 1
        try:
            # One turn of the loop first: requests already read reach this point too (and
            # count), and a request that is no query (a health check, a write's 503) is not
            # kept waiting behind this job.
            await asyncio.sleep(0)
            if self._asking == 1 and not self._writing():  # none waiting, none on the threads
                return fn(*args)
            return await self._pool.run(fn, *args)
        finally:
            self._asking -= 1
