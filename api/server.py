"""Run the node's HTTP server (uvicorn) from settings."""

from __future__ import annotations

import logging

import uvicorn

from api.app import create_app
from api.options import ApiOptions
from node.bootstrap import build_node
from node.settings import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(
        lambda: build_node(settings),
        ApiOptions(
            max_body_bytes=settings.max_body_bytes,
            body_timeout=settings.body_timeout,
            max_car_bytes=settings.max_car_bytes,
        ),
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
        access_log=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
