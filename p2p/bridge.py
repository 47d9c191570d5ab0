"""The one trio/asyncio bridge. py-libp2p runs on trio; the node (FastAPI, uvicorn) on asyncio.

``TrioThread`` runs ``trio.run`` in a daemon thread. From asyncio: ``call_soon`` schedules a
sync function on the trio thread without waiting (thread-safe, never blocks the event loop) and
``call`` runs a trio coroutine function there and awaits its result. From trio: ``to_asyncio``
runs an asyncio coroutine on the node's loop and awaits its result without blocking trio.
Nothing else in the code base crosses between the two loops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import trio

log = logging.getLogger(__name__)

T = TypeVar("T")


class TrioThread:
    def __init__(self, name: str = "libp2p") -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        #: What ended the trio thread, if it ended with an exception (never silently).
        self.error: BaseException | None = None

    async def start(self, main: Callable[[Callable[[], None]], Awaitable[None]]) -> None:
        """Run ``main(ready)`` on a new trio thread; return once it calls ``ready()``.

        An exception raised by ``main`` before ``ready()`` is raised here.
        """
        self._loop = asyncio.get_running_loop()

        def ready() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set_result(None)

        def run() -> None:
            try:
                trio.run(main, ready)
            except BaseException as exc:
                log.exception("libp2p thread failed")
                self.error = exc
                if not self._ready.done():
                    self._ready.set_exception(exc)
                self._done.set_exception(exc)
            else:
                if not self._ready.done():
                    self._ready.set_exception(RuntimeError("libp2p stopped before it was ready"))
                self._done.set_result(None)

        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        await asyncio.wrap_future(self._ready)

    @property
    def running(self) -> bool:
        """Started and not finished."""
        return self._thread is not None and self._thread.is_alive()

    def call_soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the trio thread (from any thread, without waiting)."""
        if self._token is None:
            raise RuntimeError("trio thread not started")
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            log.debug("trio thread finished; dropped a call")

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run the trio coroutine function ``fn(*args)`` on the trio thread; await its result."""
        token = self._token
        if token is None:
            raise RuntimeError("trio thread not started")
        return await asyncio.to_thread(trio.from_thread.run, fn, *args, trio_token=token)

    async def to_asyncio(self, coro: Coroutine[Any, Any, T]) -> T:
        """From trio: run ``coro`` on the node's asyncio loop and wait for it."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)  # type: ignore[call-arg]

    async def join(self, limit: float = 10.0) -> None:
        """Wait up to ``limit`` seconds for the trio thread to finish (after ``main`` returned)."""
        async with asyncio.timeout(limit):
            await asyncio.wrap_future(self._done)
