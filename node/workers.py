"""Worker threads for the blocking part of queries (ranking, catalog reads, proofs), each job
handed to the thread that went idle last.

What it owns
    ``HotPool``: at most ``size`` daemon threads, started on demand, and ``run(fn, *args)``,
    which awaits ``fn(*args)`` on one of them from the event loop.

Why not ``asyncio.to_thread``
    The default executor wakes whichever idle thread its queue happens to hand a job to, so
    queries that come one at a time run on a different thread, and often a different core,
    each time: the FAISS graph's upper layers, the keyword kernel's buffers and SQLite's pages
    are cold in that core's caches. Measured on the 2-core machine (BENCHMARKS.md, "Query
    latency"), ranking the same vector-in query took ~0.1 ms longer that way. A stack of idle
    threads (the last to finish is the first to wake) keeps one thread hot while queries come
    one at a time and brings in more only while they overlap. Queries also stop sharing the
    default executor with ingest, publishing and status reads: they never wait behind those
    for a thread.

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

    def run(self) -> None:
        try:
            result = self.call()
        except BaseException as exc:
            self.settle(None, exc)
        else:
            self.settle(result, None)

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
    def size(self) -> int:
        return self._size

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
            job.run()
            job = self._next(worker)

    def _next(self, worker: _Worker) -> _Job | None:
        """The next job for ``worker``: the oldest waiting one, else the one a later submit
        hands it after it joins the idle stack; None once the pool is closed."""
        with self._lock:
            if self._backlog:
                return self._backlog.popleft()
            if self._closed:
                return None
            worker.job = None
            worker.wake.clear()
            self._idle.append(worker)
        worker.wake.wait()
        return worker.job
