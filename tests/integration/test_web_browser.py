"""The web page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright): search,
contribute, see the fact appear with its provenance, and a screenshot."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.helpers import NodeProcess

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialing Google's hosts (no network here).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        "Debian chromium is installed by scripts/test.sh (apt-get install chromium)"
    )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


WAIT_MS = 120_000  # generous: the page must get there, however slow the machine


def open_page(browser: Browser, url: str) -> tuple[Page, list[str], set[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    hosts: set[str] = set()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
    page.goto(url)
    return page, errors, hosts


def test_search_contribute_and_provenance_in_a_browser(
    browser: Browser, node: NodeProcess, tmp_path: Path
) -> None:
    page, errors, hosts = open_page(browser, f"{node.url}/")
    # locator waits, not wait_for_function: the page's CSP (script-src 'self') refuses the eval
    # Playwright's polling of a string predicate needs when it is not true at once
    page.locator("#status", has_text="facts").wait_for(timeout=WAIT_MS)
    text = f"Browser test: the kakapo is a flightless parrot ({time.time():.0f})."

    page.fill("#text", text)
    page.fill("#metadata", "source=browser\nyear=2026")
    page.click("#contribute-form button[type=submit]")
    page.wait_for_selector("#contribute-result .ok")
    result = page.text_content("#contribute-result") or ""
    assert result.startswith("created:"), result
    cid = result.split(":", 1)[1].strip()

    page.fill("#query", "flightless parrot kakapo")
    page.select_option("#mode", "keyword")
    page.fill("#filter", "source=browser")
    page.click("#search-form button[type=submit]")
    page.wait_for_selector(".hit")
    first = page.locator(".hit").first
    assert first.get_attribute("data-cid") == cid
    assert (first.locator(".text").text_content() or "") == text
    badge = first.locator(".badge").text_content() or ""
    assert badge == "pending (node)" or badge.startswith("anchored · block"), badge
    # the page checked the hit itself (CID from the block, signer from the signature)
    verified = first.locator(".verify.verified", has_text="verified in browser")
    verified.wait_for(timeout=WAIT_MS)
    assert first.locator(".verify.failed").count() == 0
    assert "checked in your browser" in (page.text_content("#results .legend") or "")
    assert "year: 2026" in (first.text_content() or "")
    assert first.locator(f'a[href="/ipfs/{cid}?format=raw"]').count() == 1

    first.locator(".provenance-button").click()
    panel = first.locator(".provenance")
    panel.locator("table.bundle").wait_for()
    assert "signature valid" in (panel.text_content() or "")
    assert f"knowhub verify {cid}" in (panel.text_content() or "")

    page.locator("#context", has_text="cid:").wait_for(state="attached", timeout=WAIT_MS)
    shot = tmp_path / "knowhub-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    if target := os.environ.get("KNOWHUB_SCREENSHOT"):
        shutil.copy(shot, target)
    assert not errors, errors
    assert hosts == {urlsplit(node.url).netloc}  # nothing fetched from anywhere else
    page.close()


def _flip_block(proof: dict[str, Any]) -> None:
    """One base64 character in the middle of the block, swapped for another valid one."""
    block = proof["block"]
    at = len(block) // 2
    proof["block"] = block[:at] + ("B" if block[at] == "A" else "A") + block[at + 1 :]


def _flip_signature(proof: dict[str, Any]) -> None:
    """One hex digit inside r."""
    sig = proof["signature"]
    proof["signature"] = sig[:20] + ("1" if sig[20] == "0" else "0") + sig[21:]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [(_flip_block, "block hashes to"), (_flip_signature, "signature")],
    ids=["block", "signature"],
)
def test_a_tampered_hit_fails_in_the_browser(
    browser: Browser,
    node: NodeProcess,
    tamper: Callable[[dict[str, Any]], None],
    reason: str,
) -> None:
    """A node (or anything between it and the page) that alters a hit's block or signature
    is caught by the page itself: the /v1/query answer is intercepted and one hit tampered."""
    stamp = f"{time.time_ns()}"
    for i in range(2):
        reply = httpx.post(
            f"{node.url}/v1/facts",
            json={"text": f"Tamper test {stamp}: the okapi is a giraffid, number {i}."},
            timeout=120,
        )
        assert reply.status_code in (200, 201), reply.text
    tampered: list[str] = []

    def handle(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        hits = body["results"]
        assert len(hits) >= 2 and all(hit.get("proof") for hit in hits), body
        tamper(hits[0]["proof"])
        tampered.append(hits[0]["cid"])
        route.fulfill(response=response, body=json.dumps(body))

    page, errors, _ = open_page(browser, f"{node.url}/")
    page.route("**/v1/query", handle)
    page.fill("#query", f"Tamper test {stamp} okapi giraffid")
    page.select_option("#mode", "keyword")
    page.click("#search-form button[type=submit]")
    hits = page.locator(".hit")
    expect(hits.nth(1)).to_be_visible(timeout=WAIT_MS)
    first = page.locator(f'.hit[data-cid="{tampered[0]}"]')
    expect(first.locator(".verify.failed")).to_contain_text(f"FAILED: {reason}", timeout=WAIT_MS)
    expect(first.locator(".verify.verified")).to_have_count(0)
    # the hits left alone still verify
    second = hits.nth(1)
    expect(second.locator(".verify.verified")).to_contain_text(
        "verified in browser", timeout=WAIT_MS
    )
    expect(page.locator("#results .verify-summary")).to_contain_text(
        "hits verified in", timeout=WAIT_MS
    )
    assert not errors, errors
    page.close()


def test_a_bad_filter_is_reported_on_the_page(browser: Browser, node: NodeProcess) -> None:
    page, errors, _ = open_page(browser, f"{node.url}/")
    page.fill("#query", "anything")
    page.fill("#filter", '{"a": {"$regex": "x"}}')
    page.click("#search-form button[type=submit]")
    page.wait_for_selector("#results .error")
    assert "400 invalid_filter" in (page.text_content("#results") or "")
    page.fill("#filter", "{not json")
    page.click("#search-form button[type=submit]")
    page.locator("#results", has_text="JSON").wait_for(timeout=WAIT_MS)
    # the browser logs the refused request itself; nothing else may fail
    assert [e for e in errors if "status of 400" not in e] == [], errors
    page.close()


def test_api_docs_render_offline(browser: Browser, node: NodeProcess) -> None:
    # Swagger UI comes from the node itself (api/docs_ui.py), not from a CDN
    page, errors, hosts = open_page(browser, f"{node.url}/docs")
    page.locator(".swagger-ui .info", has_text="knowhub node").wait_for(timeout=WAIT_MS)
    page.locator(".opblock", has_text="/v1/query").first.wait_for(timeout=WAIT_MS)
    assert hosts == {urlsplit(node.url).netloc}
    assert not errors, errors
    page.close()
