"""Embedding scheduler: queries first, ingest in short slices, and a bounded ingest lane.

The model is one CPU-bound resource. Before this module, query and ingest embeddings shared
one worker thread in arrival order, so a node receiving batches (REST or gossip) made every
query wait behind whole batches (measured: hybrid p50 0.39 s -> 11.5 s). Here two lanes:

- the **query lane** always goes first; queries that wait together are embedded in one pass;
- the **ingest lane** is embedded a *slice* at a time, each slice sized from the measured cost
  of the model (an EWMA of seconds per character) so that it takes about ``slice_seconds``;
  between slices the worker looks at the query lane again.

With one embedder, one worker thread serves both lanes and a query waits at most one slice
(one forward pass: ~30 ms for a 256-token abstract on 2 cores). With a second, dedicated
``query_embedder`` (the node's default: a second copy of the model), queries are embedded on
their own thread, and when the ingest embedder is ``Preemptible`` (torch) its forward pass
holds before every transformer layer while a query waits or runs: a query waits at most one
layer and then has the CPU to itself. An ingest embedder that cannot pause inside a pass (ONNX
Runtime) holds between slices instead: a query shares the CPU with at most the one slice in
progress (``slice_seconds``), and no new slice starts while queries wait or run. Queries first
means a stream of queries can hold ingest back; the ingest bound then answers writers with 503
(the query lane is bounded too).

Invariants: the ingest lane holds at most ``max_pending`` texts (queued plus in progress) and
at most ``max_wait`` seconds of work at the measured ingest rate, except that one request may
always enter an empty lane (so a batch larger than the bound is not refused forever);
``admit`` refuses beyond it with ``Overloaded`` and a ``Retry-After`` estimated from the
measured throughput, *before* anything is embedded or stored. The query lane is bounded the
same way (``max_queries``). A job whose caller went away (client disconnected, timed out) is
taken out of the lane. Results are handed back on the caller's event loop; an exception in
the model fails exactly the requests of that pass.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from node.errors import Overloaded, StorageError, Unavailable
from node.ports import Embedder, Preemptible, Vectors

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    #: Texts the ingest lane may hold (queued + being embedded) before writes get 503.
    max_pending: int = 1024
    #: ... and the most seconds of embedding work (at the measured ingest rate) it may hold:
    #: a write is refused rather than left waiting longer than a client would.
    max_wait: float = 10.0
    #: Queries that may wait for the model before queries get 503.
    max_queries: int = 256
    #: Target duration of one ingest slice: the longest a query waits behind ingest.
    slice_seconds: float = 0.025
    #: Most texts in one forward pass.
    max_slice: int = 64


@dataclass(slots=True)
class _Job:
    texts: Sequence[str]
    future: asyncio.Future[Vectors]
    loop: asyncio.AbstractEventLoop
    out: list[Vectors] = field(default_factory=list)
    done: int = 0


@dataclass(frozen=True, slots=True)
class EmbedStats:
    ingest_pending: int
    queries_waiting: int
    max_pending: int
    #: Measured ingest throughput (texts per second, EWMA), 0 before the first slice.
    texts_per_second: float
    #: The next write would be refused.
    full: bool


class EmbedScheduler:
    def __init__(
        self,
        embedder: Embedder,
        options: SchedulerOptions | None = None,
        *,
        query_embedder: Embedder | None = None,
    ) -> None:
        self._embedder = embedder
        self._opts = options or SchedulerOptions()
        self._cond = threading.Condition()
        self._queries: deque[_Job] = deque()
        self._ingest: deque[_Job] = deque()
        self._pending = 0  # texts in the ingest lane, counted at admission
        self._closed = False
        self._querying = False  # the query thread is embedding
        self._hold_between_slices = False
        self._query_thread: threading.Thread | None = None
        if query_embedder is not None:
            # queries get their own instance and thread; an ingest pass pauses between layers
            # while a query waits or runs (see the module docstring)
            if isinstance(embedder, Preemptible):
                embedder.set_yield_point(self._yield_to_queries)
            else:  # e.g. ONNX Runtime: a pass cannot pause, so ingest holds between slices
                self._hold_between_slices = True
            self._query_thread = threading.Thread(
                target=self._run_queries, args=(query_embedder,), name="embed-query", daemon=True
            )
            self._query_thread.start()
        # cost model: seconds = overhead + per_char * chars (EWMA); conservative start
        self._per_char = 2e-5
        self._overhead = 0.003
        self._texts_per_second = 0.0
        self._ingest_rate = 0.0  # texts/s of ingest slices alone (EWMA)
        self._thread = threading.Thread(target=self._run, name="embed", daemon=True)
        self._thread.start()

    # -- callers (event loop) ------------------------------------------------------------------

    def admit(self, count: int) -> None:
        """Reserve room for ``count`` ingest texts or raise ``Overloaded``; pair every
        successful call with one ``embed_ingest`` of those texts or ``release(count)``."""
        with self._cond:
            if self._pending and not self._fits(count):
                raise Overloaded(
                    f"the node is busy embedding {self._pending} texts (about "
                    f"{self._drain_seconds(self._pending):.0f} s of work); retry later",
                    retry_after=self._drain_seconds(self._pending),
                )
            self._pending += count

    def release(self, count: int) -> None:
        with self._cond:
            self._pending = max(0, self._pending - count)

    def has_room(self, count: int, share: float = 1.0) -> bool:
        """Whether ``count`` more texts fit in ``share`` of the bounds (an empty lane always
        has room)."""
        with self._cond:
            return not self._pending or self._fits(count, share)

    async def wait_for_room(self, count: int, share: float, within: float) -> bool:
        """Wait (backpressure for peers' facts) until ``count`` texts fit in ``share`` of the
        bounds; False when they do not within ``within`` seconds."""
        deadline = time.monotonic() + within
        while not self.has_room(count, share):
            if self._closed or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def _fits(self, count: int, share: float = 1.0) -> bool:
        total = self._pending + count
        if total > self._opts.max_pending * share:
            return False
        return not self._ingest_rate or total / self._ingest_rate <= self._opts.max_wait * share

    async def embed_query(self, texts: Sequence[str]) -> Vectors:
        with self._cond:
            if len(self._queries) >= self._opts.max_queries:
                raise Overloaded(
                    f"{len(self._queries)} queries are waiting for the model; retry later",
                    retry_after=1.0,
                )
        return await self._submit(self._queries, texts)

    async def embed_ingest(self, texts: Sequence[str]) -> Vectors:
        """Embed admitted texts (see ``admit``); the reservation is released when done."""
        try:
            return await self._submit(self._ingest, texts)
        finally:
            self.release(len(texts))

    def stats(self) -> EmbedStats:
        with self._cond:
            return EmbedStats(
                self._pending,
                len(self._queries),
                self._opts.max_pending,
                self._ingest_rate,
                bool(self._pending) and not self._fits(1),
            )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        if self._query_thread is not None:
            self._query_thread.join(timeout=30)

    async def _submit(self, lane: deque[_Job], texts: Sequence[str]) -> Vectors:
        loop = asyncio.get_running_loop()
        if not texts:
            return np.zeros((0, self._embedder.dimension), dtype=np.float32)
        job = _Job(texts, loop.create_future(), loop)
        with self._cond:
            if self._closed:
                raise Unavailable("the node is shutting down")
            lane.append(job)
            self._cond.notify_all()  # the ingest, query and paused threads share it
        try:
            return await job.future
        except asyncio.CancelledError:
            with self._cond:  # nobody waits for it any more: do not embed the rest
                if job in lane:
                    lane.remove(job)
            raise

    def _drain_seconds(self, texts: int) -> float:
        rate = self._ingest_rate or self._texts_per_second or 10.0
        return max(1.0, min(60.0, texts / rate))

    # -- worker thread -------------------------------------------------------------------------

    def _run(self) -> None:
        serves_queries = self._query_thread is None
        while True:
            queries: list[_Job] = []
            with self._cond:
                while not self._closed and (
                    (not (serves_queries and self._queries) and not self._ingest)
                    or (self._hold_between_slices and (self._queries or self._querying))
                ):
                    self._cond.wait()
                if self._closed:
                    failed = [*self._queries, *self._ingest]
                    self._queries.clear()
                    self._ingest.clear()
                    break
                if serves_queries and self._queries:
                    queries = list(self._queries)
                    self._queries.clear()
                else:
                    job = self._ingest[0]
                    take = self._slice(job)
            if queries:
                self._embed_queries(queries)
            else:
                self._embed_slice(job, take)
        for pending in failed:
            _resolve(pending, exc=Unavailable("the node is shutting down"))

    def _run_queries(self, embedder: Embedder) -> None:
        """The query thread (with a dedicated query embedder): embed whatever queries wait,
        together, while ingest passes hold at their next layer."""
        while True:
            with self._cond:
                while not self._queries and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return  # the ingest thread fails what is left
                jobs = list(self._queries)
                self._queries.clear()
                self._querying = True
            try:
                self._embed_queries(jobs, embedder)
            finally:
                with self._cond:
                    self._querying = False
                    self._cond.notify_all()

    def _yield_to_queries(self) -> None:
        """Runs inside an ingest forward pass, before each layer: hold while queries wait or
        are being embedded."""
        with self._cond:
            while (self._queries or self._querying) and not self._closed:
                self._cond.wait()

    def _embed_queries(self, jobs: list[_Job], embedder: Embedder | None = None) -> None:
        texts = [t for job in jobs for t in job.texts]
        try:
            # the shared instance feeds the cost model; a dedicated one is not the ingest model
            vectors = self._timed(texts) if embedder is None else embedder.embed(texts)
        except Exception as exc:  # the model's failure fails these queries, not the node
            for job in jobs:
                _resolve(job, exc=_as_storage_error(exc))
            return
        start = 0
        for job in jobs:
            _resolve(job, result=vectors[start : start + len(job.texts)])
            start += len(job.texts)

    def _slice(self, job: _Job) -> int:
        budget = self._opts.slice_seconds - self._overhead
        take, cost = 0, 0.0
        for text in job.texts[job.done : job.done + self._opts.max_slice]:
            cost += len(text) * self._per_char
            if take and cost > budget:
                break
            take += 1
        return max(1, take)

    def _embed_slice(self, job: _Job, take: int) -> None:
        texts = job.texts[job.done : job.done + take]
        t0 = time.perf_counter()
        try:
            vectors = self._timed(texts)
        except Exception as exc:
            self._drop(job)
            _resolve(job, exc=_as_storage_error(exc))
            return
        rate = take / max(time.perf_counter() - t0, 1e-6)
        self._ingest_rate = rate if not self._ingest_rate else 0.8 * self._ingest_rate + 0.2 * rate
        job.out.append(vectors)
        job.done += take
        if job.done == len(job.texts):
            self._drop(job)
            _resolve(job, result=np.concatenate(job.out))

    def _drop(self, job: _Job) -> None:
        with self._cond:
            if job in self._ingest:  # a cancelled job was already taken out
                self._ingest.remove(job)

    def _timed(self, texts: Sequence[str]) -> Vectors:
        t0 = time.perf_counter()
        vectors = self._embedder.embed(texts)
        elapsed = time.perf_counter() - t0
        chars = sum(len(t) for t in texts)
        if chars and math.isfinite(elapsed):
            # per-char cost net of a fixed overhead; a slow outlier moves it only a little
            sample = max(elapsed - self._overhead, 0.0) / chars
            self._per_char = 0.8 * self._per_char + 0.2 * sample
            rate = len(texts) / max(elapsed, 1e-6)
            self._texts_per_second = (
                rate if not self._texts_per_second else 0.8 * self._texts_per_second + 0.2 * rate
            )
        return vectors


def _resolve(job: _Job, *, result: Vectors | None = None, exc: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():  # the caller went away (cancelled)
            return
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result if result is not None else np.zeros((0, 0), np.float32))

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        log.debug("embedding result dropped: event loop closed")


def _as_storage_error(exc: Exception) -> Exception:
    if isinstance(exc, StorageError | Unavailable):
        return exc
    log.exception("embedding failed", exc_info=exc)
    error = StorageError(f"embedding failed: {type(exc).__name__}")
    error.__cause__ = exc
    return error
