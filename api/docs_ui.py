"""The interactive API documentation (``/docs``), served without the internet.

FastAPI's own pages load Swagger UI and ReDoc from a CDN: on an offline or firewalled node they
are blank. Swagger UI's assets come here from a pinned package (``fastapi-offline``: Swagger UI
5, which renders the OpenAPI 3.1 document FastAPI writes) and are served by the node at
``/docs/assets``. There is no ``/redoc``: ReDoc's standalone bundle still fetches its logo from
cdn.redoc.ly. Invariant: the page fetches nothing from outside the node (a browser test checks).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
ASSETS = Path(str(files("fastapi_offline") / "static"))


def mount_docs(app: FastAPI, *, docs_url: str = "/docs") -> None:
    """Serve Swagger UI at ``docs_url`` from local assets (create the app with
    ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are not there)."""
    router = APIRouter(include_in_schema=False)
    oauth2_redirect = f"{docs_url}/oauth2-redirect"

    def assets(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_URL}"

    @router.get(docs_url, response_class=HTMLResponse)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{assets(request)}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets(request)}/swagger-ui.css",
            swagger_favicon_url=f"{assets(request)}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @router.get(oauth2_redirect, response_class=HTMLResponse)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.include_router(router)
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
