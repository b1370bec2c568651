"""`/docs` in a real headless Chromium against a real `hgr hub` process: with every request that does not go
to 127.0.0.1 refused, the page renders every operation of /openapi.json (with its operationId) from the
files the hub ships, and "Try it out" reaches the hub. Nothing is mocked."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from hgr.hub.openapi import OPERATIONS
from tests.browser import CHROMIUM, CHROMIUM_ARGS, need_chromium
from tests.hub_support import hub_processes

pytestmark = pytest.mark.browser



@pytest.fixture(scope="module")
def hub_url(tmp_path_factory: pytest.TempPathFactory, model_path: str) -> Iterator[str]:
    env = {**os.environ, "WORKERS": "1", "HGR_MODEL_PATH": model_path, "LOG_FORMAT": "text", "MQTT_URL": "",
           "REDIS_URL": "", "AUTH_ENABLED": "true", "API_KEYS": "docs:docs-browser-key-0123456789"}
    with hub_processes(env, 1, tmp_path_factory.mktemp("hub")) as hubs:
        yield hubs[0][0]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_docs_render_every_operation_offline(hub_url: str, browser: Any) -> None:
    context = browser.new_context()
    outside: list[str] = []
    fetched: list[str] = []

    def only_local(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:")):
            fetched.append(url)
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{hub_url}/docs")
    # A locator, not wait_for_function: a string predicate that is not true at once is polled by eval inside
    # the page, which the page's CSP (no 'unsafe-eval', as it should) refuses: it failed so on a loaded machine.
    page.locator(".opblock").nth(len(OPERATIONS) - 1).wait_for(state="attached", timeout=60_000)
    rendered = page.eval_on_selector_all(".opblock", "els => els.map(e => e.id)")
    expected = {f"operations-{op.tag}-{op.operation_id}" for op in OPERATIONS}
    assert expected <= set(rendered), f"not rendered: {expected - set(rendered)}"
    assert "hgr hub API" in page.inner_text(".info .title")
    # "Try it out" on GET /health: the browser calls the hub and shows its answer
    health = page.locator("#operations-operations-health")
    health.locator(".opblock-summary").click()
    health.locator(".try-out__btn").click()
    health.locator(".execute").click()
    health.locator(".live-responses-table tr.response .response-col_status").first.wait_for(timeout=30_000)
    assert health.locator(".live-responses-table tr.response .response-col_status").first.inner_text().strip() == "200"
    assert outside == [], f"the page asked for files outside the hub: {outside}"
    assert any(url.endswith("/openapi.json") for url in fetched)
    assert errors == [], errors
    context.close()
