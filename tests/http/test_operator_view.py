"""The operator's view in a real browser: headless Chromium (Debian's package) driven by Playwright.

The browser is the system's /usr/bin/chromium; Playwright never downloads one. In CI
(CI=true) a missing browser fails the tests; elsewhere they are skipped, saying why.
Set CANONLOG_SCREENSHOT_DIR to keep screenshots of what the tests saw (docs/images).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from canonlog.infrastructure.http import ServiceConfig
from tests.http.conftest import running_service
from tests.http.test_ceremonies import establish_policy, operated

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() == "true"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-sync"]
WAIT_MS = 15_000

if not IN_CI:
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium); "
                    "the operator view's browser tests need it", allow_module_level=True)
    pytest.importorskip("playwright", reason="the browser tests need the playwright package")

from playwright.async_api import Page, async_playwright, expect  # noqa: E402


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1100, "height": 720})
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def screenshot(page: Page, name: str) -> None:
    directory = os.environ.get("CANONLOG_SCREENSHOT_DIR")
    if directory:
        await page.screenshot(path=str(Path(directory) / f"{name}.png"))


async def open_view(page: Page, url: str, token: str) -> None:
    """Opens the view, pastes the token as an operator would, and waits for the live tail."""
    await page.goto(f"{url}/ui/")
    await expect(page.locator("#notice")).to_contain_text("needs a bearer token", timeout=WAIT_MS)
    await page.fill("#token", token)
    await page.click("#token-form button[type=submit]")
    await expect(page.locator("#tail-status")).to_have_text("tail: live", timeout=WAIT_MS)
    await expect(page.locator("#notice")).to_have_text("", timeout=WAIT_MS)


async def test_the_view_loads_shows_the_chain_and_runs_a_verification(shared, tokens, page):
    async with shared.client(headers=tokens.bearer()) as client:
        receipt = (await client.post("/v1/streams/viewed/events", json={
            "events": [{"type": "order_placed", "payload": {"amount": 120}}]})).json()
    await open_view(page, shared.url, tokens.rsa("read operate"))
    row = page.locator(f'#events tr[data-sequence="{receipt["sequence"]}"]')
    await expect(row).to_contain_text("order_placed")
    await expect(row.locator(".hash")).to_have_attribute("title", receipt["hash"])
    await expect(page.locator("#head-hash")).not_to_be_empty()
    await expect(page.locator("#halt-pill")).to_have_text("not halted", timeout=WAIT_MS)
    await expect(page.locator("#lease-pill")).to_have_text("lease: held", timeout=WAIT_MS)
    await expect(page.locator("#grant")).to_contain_text("epoch")
    await expect(page.locator("#checkpoints-status")).to_contain_text("no checkpoint directory")
    assert await page.evaluate("sessionStorage.getItem('canonlog.token')")

    await page.click("#run-verification")
    await expect(page.locator("#verification-status")).to_contain_text("PASSED", timeout=WAIT_MS)
    await screenshot(page, "operator-view")


async def test_the_live_tail_shows_a_new_append_without_a_reload(shared, tokens, page):
    await open_view(page, shared.url, tokens.rsa("read"))
    async with shared.client(headers=tokens.bearer()) as client:
        receipt = (await client.post("/v1/streams/live/events", json={
            "events": [{"type": "appended_while_watching", "payload": {"n": 1}}]})).json()
    row = page.locator(f'#events tr[data-sequence="{receipt["sequence"]}"]')
    await expect(row).to_contain_text("appended_while_watching", timeout=WAIT_MS)
    await expect(row).to_have_class("new")
    await expect(page.locator("#head-sequence")).to_have_text(str(receipt["sequence"]))


async def test_a_halt_and_a_ceremony_appear_in_the_view(database, tmp_path, auth_config, tokens, page):
    async with running_service(database, tmp_path, ServiceConfig(auth=auth_config),
                               **operated(database)) as service:
        await establish_policy(database.admin.uri())
        await open_view(page, service.url, tokens.rsa("read"))
        await expect(page.locator("#halt-pill")).to_have_text("not halted", timeout=WAIT_MS)
        async with service.client(headers=tokens.bearer()) as client:
            halted = await client.post("/v1/halt", json={"reason": "suspicious export"})
            assert halted.status_code == 200, halted.text
        await expect(page.locator("#halt-pill")).to_have_text("halted", timeout=WAIT_MS)
        await expect(page.locator("#halt-state")).to_contain_text("suspicious export")
        await expect(page.locator("#events tr.halt")).to_contain_text("canonlog.halted", timeout=WAIT_MS)
        await expect(page.locator("#readiness")).to_contain_text("not ready", timeout=WAIT_MS)
        await expect(page.locator("#ceremonies-status")).to_have_text("No ceremony has been proposed.")
        async with service.client(headers=tokens.bearer()) as client:
            proposed = await client.post("/v1/ceremonies/failover",
                                         json={"target_writer_id": "writer-2"})
            assert proposed.status_code == 201, proposed.text
        await expect(page.locator("#ceremony-list")).to_contain_text(
            "failover to writer-2, proposed by alice; approved by 0 of the 2", timeout=WAIT_MS)
        await screenshot(page, "operator-view-halted")
