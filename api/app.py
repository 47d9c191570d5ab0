"""Build the FastAPI application around a node."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.middleware import BodyGuard
from api.options import ApiOptions
from api.routes import facts, ipfs, query, system
from node import __version__
from node.service import KnowledgeNode

log = logging.getLogger(__name__)


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
            yield
        finally:
            app.state.node = None
            await node.close()
            log.info("node stopped; index flushed")

    app = FastAPI(
        title="knowhub node",
        version=__version__,
        summary="Contribute facts; retrieve ranked, cited context for LLM agents.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(facts.router)
    app.include_router(query.router)
    app.include_router(system.router)
    app.include_router(ipfs.router)
    app.state.options = opts
    app.add_middleware(
        BodyGuard,
        max_bytes=opts.max_body_bytes,
        timeout=opts.body_timeout,
        stream_paths=("/v1/snapshots/import",),
    )
    return app
