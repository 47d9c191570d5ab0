"""The web page at / of a real node: served files, no outside assets, every API call it makes
exists, and its rendering module's behaviour under Node (tests/web/ui.test.mjs)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.options import ApiOptions
from api.web import STATIC
from tests.conftest import ROOT
from tests.helpers import NodeProcess

pytestmark = pytest.mark.integration
NODE = shutil.which("node")


def test_page_and_assets_are_served(node: NodeProcess) -> None:
    page = httpx.get(f"{node.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for element in ('id="search-form"', 'id="mode"', 'id="filter"', 'id="contribute-form"',
                    'id="api-key"', 'id="status"', 'id="peers"'):  # fmt: skip
        assert element in page.text
    assets = (("app.js", "javascript"), ("ui.js", "javascript"), ("verify.js", "javascript"),
              ("eth.js", "javascript"),
              ("style.css", "css"))  # fmt: skip
    for asset, kind in assets:
        reply = httpx.get(f"{node.url}/static/{asset}")
        assert reply.status_code == 200 and kind in reply.headers["content-type"], asset
    assert httpx.get(f"{node.url}/static/nope.js").status_code == 404


def test_no_asset_comes_from_the_internet() -> None:
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[\w.-]+\.[a-z]{2,}/", text), path.name
        for ref in re.findall(r'(?:src|href)="([^"]+)"', text):
            assert ref.startswith(("/", "#", "${", "data:")) or "{" in ref, (path.name, ref)


def test_every_api_call_of_the_page_exists(node: NodeProcess) -> None:
    spec = httpx.get(f"{node.url}/openapi.json").json()["paths"]
    templates = {re.sub(r"\{[^}]+\}", "{}", p): set(spec[p]) for p in spec}
    source = (STATIC / "app.js").read_text() + (STATIC / "ui.js").read_text()
    calls = re.findall(r'api\("(GET|POST)", [`"](/v1/[^`"]*)[`"]', source)
    assert len(calls) >= 4
    for method, path in calls:
        template = re.sub(r"\$\{[^}]+\}", "{}", path)
        assert method.lower() in templates.get(template, set()), (method, path)
    for path in re.findall(r'href="(/v1/[^"?]+)', source):
        assert re.sub(r"\$\{[^}]+\}", "{}", path) in templates, path


def test_explorer_template_is_escaped_into_the_page() -> None:
    import anyio

    app = create_app(lambda: None, ApiOptions(explorer_tx_url='https://x.test/tx/{tx}"><b>'))  # type: ignore[arg-type,return-value]

    async def fetch() -> str:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://node"
        ) as client:
            return (await client.get("/")).text

    page = anyio.run(fetch)
    assert 'data-explorer-tx="https://x.test/tx/{tx}&quot;&gt;&lt;b&gt;"' in page


def test_verify_vectors_are_current(tmp_path: Path) -> None:
    """tests/web/verify_vectors.json is what make_verify_vectors.py writes today: the browser's
    checks are held to the node's current record layout, CIDs and signatures."""
    fresh = tmp_path / "verify_vectors.json"
    script = ROOT / "tests" / "web" / "make_verify_vectors.py"
    subprocess.run([sys.executable, str(script), str(fresh)], cwd=ROOT, check=True)
    committed = (ROOT / "tests" / "web" / "verify_vectors.json").read_text(encoding="utf-8")
    assert fresh.read_text(encoding="utf-8") == committed


def test_rendering_module_under_node() -> None:
    assert NODE is not None, "Node.js is required (scripts/setup.sh needs it for npm too)"
    for name in ("app.js", "ui.js", "verify.js", "eth.js"):
        subprocess.run([NODE, "--check", str(STATIC / name)], check=True)
    result = subprocess.run(
        [NODE, "--test", "tests/web/ui.test.mjs", "tests/web/verify.test.mjs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout and "# pass 24" in result.stdout, result.stdout
