"""Keep what a peer's bytes raise inside py-libp2p from ending the node's libp2p thread.

Why. py-libp2p 0.8.1 (checked against that version; look again on every upgrade) runs each
inbound stream (multistream negotiation, then the protocol's handler: identify, identify push,
ping, ``/meshsub/1.1.0`` and ``/1.0.0``, ``/knowhub/sync/1.0.0``) as a task in its
connection's nursery (``SwarmConn._handle_muxed_stream``), and pubsub's per-message and
per-peer work (``Pubsub.push_msg`` and friends) as tasks of pubsub's service manager. Neither
catches everything a peer can provoke, and an escaping exception cancels the connection's
nursery, then the Swarm service, then ``host.run``: the whole network layer. Seen: a peer that
writes ``\\x05garbage`` on ``/meshsub/1.1.0`` (``Pubsub.continuously_read_stream`` lets the
protobuf ``DecodeError`` out), a signed-looking pubsub message whose ``key`` field is garbage
(``signature_validator`` re-raises the ``DecodeError`` inside ``push_msg``), and
``BasicHost._swarm_stream_handler`` raising ``StreamFailure`` when no protocol is selected.

What. Two wrappers, installed per host by ``p2p.host``; no library code is changed:

* ``contain_streams`` replaces the swarm's one common stream handler (the one ``BasicHost``
  installs with ``set_stream_handler``; it negotiates and dispatches every inbound stream) by
  one that awaits it and, on any ``Exception``, resets the stream and reports the peer;
* ``contain_pubsub_tasks`` wraps ``run_task`` of pubsub's service manager so that a task it
  starts (not a daemon: those are pubsub's own loops) reports its exception instead of raising
  it into the manager. Such tasks are started for a peer or a message from one; the peer is
  their first argument when they have one.

An exception that is ordinary teardown (the peer hung up, reset or could not be reached:
libp2p's ``is_expected_connection_shutdown``, its stream, I/O, host and swarm errors, trio's
closed-resource errors and timeouts) is logged at debug level and is no offence; any other is
logged and reported with the peer to ``on_fault`` (``p2p.host`` counts it as an offence).
Cancellation (a ``BaseException``) is never caught.

If a daemon task or anything else still fails, the network layer is not left dead, nor silent:
``supervise`` runs it again after a backoff and reports it down, then up.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.host.exceptions import HostException
from libp2p.io.exceptions import IOException
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub
from libp2p.stream_muxer.exceptions import MuxedConnUnavailable, MuxedStreamError
from libp2p.utils.connection_shutdown import is_expected_connection_shutdown

log = logging.getLogger(__name__)

#: Told which peer (None when unknown) raised what.
FaultFn = Callable[[ID | None, str], None]

_TEARDOWN = (
    IOException,  # stream, raw connection and incomplete-read errors
    MuxedStreamError,
    MuxedConnUnavailable,
    HostException,  # a stream to the peer could not be opened or negotiated
    SwarmException,  # nor a connection
    trio.ClosedResourceError,
    trio.BrokenResourceError,
    trio.TooSlowError,
    EOFError,
)


def is_teardown(exc: BaseException) -> bool:
    """Whether ``exc`` only says that a peer or its connection went away."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_teardown(e) for e in exc.exceptions)
    return isinstance(exc, _TEARDOWN) or is_expected_connection_shutdown(exc)


def describe(exc: BaseException) -> str:
    """A short reason for logs and offence records."""
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return describe(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}"[:300]


def contain_streams(host: IHost, on_fault: FaultFn) -> None:
    """Wrap the common inbound stream handler of ``host``'s swarm (see the module docstring)."""
    network: Any = host.get_network()
    inner: Callable[[INetStream], Awaitable[None]] = network.common_stream_handler

    async def contained(stream: INetStream) -> None:
        try:
            await inner(stream)
        except Exception as exc:
            _report(f"stream {stream.get_protocol()}", _peer_of(stream), exc, on_fault)
            try:
                await stream.reset()
            except Exception:
                log.debug("resetting a failed stream failed", exc_info=True)

    network.set_stream_handler(contained)


def _report(what: str, peer: ID | None, exc: Exception, on_fault: FaultFn) -> None:
    """Teardown is logged at debug level and is no offence; anything else is the peer's fault."""
    if is_teardown(exc):
        log.debug("%s from %s ended: %s", what, peer, describe(exc))
        return
    log.warning("%s from %s failed: %s", what, peer, describe(exc))
    log.debug("%s failure", what, exc_info=True)
    on_fault(peer, f"{what}: {describe(exc)}")


def contain_pubsub_tasks(pubsub: Pubsub, on_fault: FaultFn) -> None:
    """Wrap ``run_task`` of ``pubsub``'s running service manager (see the module docstring)."""
    manager: Any = pubsub.manager
    run_task: Callable[..., None] = manager.run_task

    def contained_run_task(
        async_fn: Callable[..., Awaitable[Any]], *args: Any, daemon: bool = False, **kwargs: Any
    ) -> None:
        if daemon:
            run_task(async_fn, *args, daemon=daemon, **kwargs)
            return

        @functools.wraps(async_fn)
        async def contained(*task_args: Any) -> None:
            try:
                await async_fn(*task_args)
            except Exception as exc:
                peer = task_args[0] if task_args and isinstance(task_args[0], ID) else None
                _report(f"pubsub {getattr(async_fn, '__name__', 'task')}", peer, exc, on_fault)

        run_task(contained, *args, daemon=daemon, **kwargs)

    manager.run_task = contained_run_task


async def supervise(
    run: Callable[[Callable[[], None]], Awaitable[None]],
    *,
    stop: trio.Event,
    ready: Callable[[], None],
    on_state: Callable[[str | None], None],
    restart_min: float,
    restart_max: float,
) -> None:
    """Run ``run(up)`` until ``stop`` is set; ``run`` calls ``up()`` once it serves.

    The first ``up()`` calls ``ready()``; a failure before it is raised (the layer could not
    start at all). Once it served, a failure (or a return without ``stop``) is logged, reported
    as ``on_state(reason)``, and ``run`` starts again after ``restart_min`` seconds, doubling
    up to ``restart_max`` (and back to ``restart_min`` after a run of a minute or more); each
    ``up()`` reports ``on_state(None)``.
    """
    delay = restart_min
    served = False

    def up() -> None:
        nonlocal served
        if not served:
            served = True
            ready()
        else:
            log.warning("libp2p network layer running again")
        on_state(None)

    while True:
        began = trio.current_time()
        try:
            await run(up)
            reason = "stopped by itself"
        except Exception as exc:
            if not served:
                raise
            if stop.is_set():
                log.debug("libp2p network layer failed while stopping", exc_info=True)
                return
            reason = describe(exc)
            log.error(
                "libp2p network layer failed (%s); restarting in %.0f s",
                reason,
                delay,
                exc_info=True,
            )
        if stop.is_set():
            return
        on_state(reason)
        if trio.current_time() - began >= 60:
            delay = restart_min
        with trio.move_on_after(delay):
            await stop.wait()
        if stop.is_set():
            return
        delay = min(delay * 2, restart_max)


def _peer_of(stream: INetStream) -> ID | None:
    try:
        peer = stream.muxed_conn.peer_id
    except Exception:
        return None
    return peer if isinstance(peer, ID) else None
