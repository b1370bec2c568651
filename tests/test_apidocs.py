"""hub/apidocs.py: /docs is served from files in the package: the vendored Swagger UI matches the record
deploy/dev/docs-ui.sh wrote (version and SHA-256 of each file), the page loads only same-origin files and
says so in its Content-Security-Policy, and nothing else under /docs is served. The page in a real
browser: test_scenario_api_docs.py."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from hgr.common.inference.pool import InferencePool
from hgr.hub import apidocs
from hgr.hub.app import Hub
from tests.hub_support import hub_app, hub_settings

FOLDER = Path(__file__).resolve().parents[1] / "hub" / "docs_ui"


def vendored() -> tuple[str, dict[str, str]]:
    """(version, {file: sha256}) from hub/docs_ui/vendored.txt."""
    lines = [line.split() for line in (FOLDER / apidocs.VENDORED).read_text().splitlines()
             if line and not line.startswith("#")]
    fields = {parts[0]: parts[1:] for parts in lines if parts[0] != "sha256"}
    assert fields["package"] == ["swagger-ui-dist"]
    return fields["version"][0], {parts[2]: parts[1] for parts in lines if parts[0] == "sha256"}


def test_the_vendored_files_are_the_recorded_release() -> None:
    version, hashes = vendored()
    assert re.fullmatch(r"5\.\d+\.\d+", version), "OpenAPI 3.1 needs Swagger UI 5"
    assert set(hashes) == {"swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"}
    for name, digest in hashes.items():
        assert hashlib.sha256((FOLDER / name).read_bytes()).hexdigest() == digest, f"{name} is not the recorded file"
    # the folder holds what the page serves, the record, and nothing else
    assert {p.name for p in FOLDER.iterdir()} == {*apidocs.ASSETS, apidocs.VENDORED}


@pytest_asyncio.fixture
async def client(model_path: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = hub_settings(auth_enabled=True, api_keys="k:docs-test-key-0123456789")
    hub = Hub(settings, InferencePool(settings, {"full": model_path}, service="hub", workers=1))  # never started
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub_app(hub)), base_url="http://hub") as c:
        yield c


@pytest.mark.asyncio
async def test_the_page_and_its_files_are_served_keyless_from_this_origin(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")  # AUTH_ENABLED=true and no key: the schema is public, so is its page
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self';" in csp and "connect-src 'self'" in csp
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("docs/") for s in sources), sources  # relative: same origin, any prefix
    _, hashes = vendored()
    for name, media in apidocs.ASSETS.items():
        r = await client.get(f"/docs/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(media), name
        if name in hashes:
            assert hashlib.sha256(r.content).hexdigest() == hashes[name]
        again = await client.get(f"/docs/{name}", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and not again.content
    assert "validatorUrl: null" in (await client.get("/docs/docs.js")).text  # no badge from validator.swagger.io
    for name in ("vendored.txt", "..%2Fapp.py", "nothing.js"):
        r = await client.get(f"/docs/{name}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
