"""The node's web page at ``/``: search, provenance, contribute, status and peers.

Static files from ``api/static`` (no build step, nothing fetched from the internet; a
Content-Security-Policy of 'self' makes the browser refuse anything else). The only value the
server fills in are the block-explorer URL template for transaction links and the input
limits (``node.limits``)."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from node.limits import MAX_QUERY_BYTES, MAX_TEXT_BYTES

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def mount_web(app: FastAPI, explorer_tx_url: str | None) -> None:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    page = page.replace("{{EXPLORER_TX}}", html.escape(explorer_tx_url or "", quote=True))
    page = page.replace("{{MAX_QUERY_BYTES}}", str(MAX_QUERY_BYTES))
    page = page.replace("{{MAX_TEXT_BYTES}}", str(MAX_TEXT_BYTES))
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(
            page,
            headers={
                "content-security-policy": CSP,
                "x-content-type-options": "nosniff",
                "referrer-policy": "no-referrer",
            },
        )

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
