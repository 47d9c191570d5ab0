"""Run the node's HTTP server (uvicorn) from settings."""

from __future__ import annotations

import logging
import math
import socket

import uvicorn

from api.app import create_app
from api.http_guard import guarded_protocol
from api.observability import configure_logging
from api.options import ApiOptions
from api.security import AccessPolicy, parse_keys, parse_rate
from node.bootstrap import build_node
from node.settings import Settings

log = logging.getLogger(__name__)

#: Exit status when the node cannot start (port taken, startup failed): the CLI's "any error".
STARTUP_FAILURE = 1


def api_options(settings: Settings) -> ApiOptions:
    """The HTTP layer's options; ValueError names a malformed setting."""
    try:
        access = AccessPolicy(
            api_keys=parse_keys(settings.api_keys),
            public_reads=settings.public_reads,
            read_rate=parse_rate(settings.rate_limit_reads),
            write_rate=parse_rate(settings.rate_limit_writes),
        )
    except ValueError as exc:
        raise ValueError(f"KNOWHUB_API_KEYS / KNOWHUB_RATE_LIMIT_*: {exc}") from exc
    return ApiOptions(
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        max_car_bytes=settings.max_car_bytes,
        access=access,
        cors_origins=tuple(o.strip() for o in settings.cors_origins.split(",") if o.strip()),
        shutdown_timeout=settings.shutdown_timeout,
        web=settings.web,
        explorer_tx_url=settings.explorer_tx_url,
        mcp=settings.mcp,
        mcp_contribute=settings.mcp_contribute,
        host=settings.host,
    )


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    log.info("listening on http://%s:%d", host, sock.getsockname()[1])
    return sock


def serve(settings: Settings, options: ApiOptions) -> int:
    configure_logging(settings.log_level, settings.log_format)
    if not options.access.api_keys and settings.host not in {"127.0.0.1", "localhost", "::1"}:
        log.warning("listening on %s without KNOWHUB_API_KEYS: anyone can write", settings.host)
    app = create_app(lambda: build_node(settings), options)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=guarded_protocol(
            header_timeout=settings.header_timeout, max_connections=settings.max_connections
        ),
        log_config=None,  # configure_logging already routed uvicorn's loggers
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
        access_log=False,  # RequestContext writes one access line per request, with its id
    )
    # Take the port before startup builds the node: a port in use fails in milliseconds instead of
    # after loading the model, and the embedded anvil, which asks the kernel for a free port
    # during startup, can never be handed the node's own port.
    try:
        sock = _listen(settings.host, settings.port, config.backlog)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return STARTUP_FAILURE
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 1
