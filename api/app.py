"""Build the FastAPI application around a node."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Match

from api import errors
from api.deps import get_node_of
from api.docs_ui import mount_docs
from api.metrics import Metrics
from api.middleware import BodyGuard
from api.observability import RequestContext
from api.openapi import install_openapi
from api.options import ApiOptions
from api.routes import curation, facts, ipfs, moderation, query, system
from api.security import AccessGuard
from node import __version__
from node.service import KnowledgeNode

log = logging.getLogger(__name__)
ROUTERS = (
    facts.router,
    query.router,
    system.router,
    ipfs.router,
    moderation.router,
    curation.router,
)


def create_app(
    make_node: Callable[[], KnowledgeNode], options: ApiOptions | None = None
) -> FastAPI:
    """``make_node`` is called at startup (the model loads then, not at import)."""
    opts = options or ApiOptions()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        node = make_node()
        await node.start()
        app.state.node = node
        log.info("node ready: %d facts", (await node.status()).facts)
        try:
            async with AsyncExitStack() as stack:
                if mcp is not None:
                    await stack.enter_async_context(mcp.session_manager.run())
                yield
        finally:
            app.state.node = None
            await node.close(anchor_timeout=opts.shutdown_timeout)
            log.info("node stopped; index flushed")

    app = FastAPI(
        title="knowhub node",
        version=__version__,
        summary="Contribute facts; retrieve ranked, cited context for LLM agents.",
        lifespan=lifespan,
        docs_url=None,  # served from local assets by mount_docs, not from a CDN
        redoc_url=None,
    )
    errors.install(app)
    mount_docs(app)
    install_openapi(app, lambda: _vector_dimension(app), lambda: _model_cid(app))
    for router in ROUTERS:
        app.include_router(router)
    if opts.web:
        from api.web import mount_web

        mount_web(app, opts.explorer_tx_url)
    mcp = None
    if opts.mcp:
        from api.mcp_server import mount_mcp

        mcp = mount_mcp(
            app,
            lambda: get_node_of(app),
            allow_contribute=opts.mcp_contribute,
            require_key=bool(opts.access.api_keys),
            host=opts.host,
        )
    app.state.options = opts
    app.state.metrics = metrics = Metrics()
    # Added innermost first: a request meets RequestContext (id, access log, metrics), CORS
    # (preflights answered before any key check), AccessGuard (keys, rate limits), then
    # BodyGuard (size, type, timeout), then the routes.
    app.add_middleware(
        BodyGuard,
        max_bytes=opts.max_body_bytes,
        timeout=opts.body_timeout,
        stream_paths=("/v1/snapshots/import",),
    )
    app.add_middleware(AccessGuard, policy=opts.access)
    if opts.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(opts.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "DELETE"],
            allow_headers=["authorization", "content-type", "x-api-key", "x-request-id"],
            expose_headers=["x-request-id", "retry-after", "server-timing"],
            max_age=600,
        )
    routes = [r for router in ROUTERS for r in router.routes]
    app.add_middleware(RequestContext, metrics=metrics, route_of=lambda s: _route_of(routes, s))
    return app


def _vector_dimension(app: FastAPI) -> int | None:
    node: KnowledgeNode | None = getattr(app.state, "node", None)
    return None if node is None else node.vector_dimension


def _model_cid(app: FastAPI) -> str | None:
    node: KnowledgeNode | None = getattr(app.state, "node", None)
    return None if node is None else node.model_cid


def _route_of(routes: list[BaseRoute], scope: MutableMapping[str, Any]) -> str | None:
    """The template of the route a request would reach (for requests refused before routing)."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return str(getattr(route, "path", "")) or None
    return None
