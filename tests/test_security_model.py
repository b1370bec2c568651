"""docs/security.md against the code: every route the hub and the edge serve, every fleet topic and every
control command is in its tables, and the scope a route row names is the one the hub enforces, proven by
calling each route without a key, with a key lacking the scope and with a key holding exactly it.
Also issue #20 row 1 (tenant A's key cannot throttle tenant B's stream; keyless callers see no fleet) and
the failed-authentication limit."""

from __future__ import annotations

import re
import typing
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from hub_support import hub_app, hub_settings
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient

from hgr.common import contracts, metrics, topics
from hgr.common.auth import SCOPES, parse_api_keys
from hgr.common.bus import LocalBus
from hgr.common.errors import ConfigError
from hgr.common.pool import InferencePool
from hgr.edge.app import EdgeNode
from hgr.hub.access import PUBLIC, ROUTE_SCOPES
from hgr.hub.app import Hub
from hgr.hub.fleet_logic import StatusMsg

DOC = Path(__file__).resolve().parents[1] / "docs" / "security.md"
KEYS = {scope: f"key-{scope.replace(':', '-')}-0123456789" for scope in SCOPES}
API_KEYS = ",".join(f"only-{scope.replace(':', '-')}:{key}:{scope}" for scope, key in KEYS.items())


def doc_rows(section: str) -> list[list[str]]:
    """The body rows of the first table under ``## <section>``."""
    text = DOC.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    table = text[text.index("\n|") + 1:].split("\n\n", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()[2:]]


def documented_routes() -> dict[tuple[str, str, str], str]:
    """(service, method, path) -> scope, from the Routes table."""
    return {(service, method, path.strip("`")): scope for service, method, path, scope, _ in doc_rows("Routes")}


def served(routes: typing.Sequence[object]) -> set[tuple[str, str]]:
    out = set()
    for r in routes:
        if isinstance(r, WebSocketRoute):
            out.add(("WS", r.path))
        elif isinstance(r, Mount):
            out.add(("GET", r.path or "/"))
        elif isinstance(r, Route):
            out |= {(m, r.path) for m in r.methods or () if m != "HEAD"}
    return out


@pytest.fixture(scope="module")
def idle_pool(model_path: str) -> InferencePool:
    return InferencePool(hub_settings(), {"full": model_path}, service="hub", workers=1)  # never started


@pytest_asyncio.fixture
async def hub(idle_pool: InferencePool) -> AsyncIterator[tuple[Hub, httpx.AsyncClient]]:
    settings = hub_settings(auth_enabled=True, api_keys=API_KEYS, rate_limit_requests=10_000)
    hub = Hub(settings, idle_pool, bus=LocalBus(settings, service="hub"))
    await hub.start()
    assert hub.fleet is not None
    await hub.fleet.store.apply_status("cam-b", StatusMsg(online=True, session="s", reason="birth", birth_seq=1), 1.0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub_app(hub)), base_url="http://hub") as client:
        yield hub, client
    await hub.stop()


def test_every_route_of_hub_and_edge_is_in_the_document(idle_pool: InferencePool) -> None:
    settings = hub_settings()
    hub = Hub(settings, idle_pool, bus=LocalBus(settings, service="hub"))
    edge = EdgeNode(hub_settings(edge_id="doc-edge"), idle_pool)
    doc = documented_routes()
    code = {("hub", m, p) for m, p in served(hub.routes)} | {("edge", m, p) for m, p in served(edge.routes)}
    assert code == set(doc), f"served, not documented: {code - set(doc)}; documented, not served: {set(doc) - code}"
    hub_doc = {(m, p): scope for (service, m, p), scope in doc.items() if service == "hub"}
    assert hub_doc == ROUTE_SCOPES, "docs/security.md and hub/access.py disagree on a scope"
    assert {s for s in doc.values()} <= {PUBLIC, *SCOPES}


def test_every_topic_and_command_is_in_the_document() -> None:
    topic_rows = {row[0].strip("`") for row in doc_rows("MQTT topics")}
    assert topic_rows == {f"edges/{{edge_id}}/{k}" for k in topics.KINDS}
    commands = {typing.get_args(typing.get_type_hints(t)["cmd"])[0] for t in typing.get_args(contracts.ControlCommand)}
    assert {row[0].strip("`") for row in doc_rows("Control commands")} == commands == {"throttle", "rebirth"}
    assert "## Listeners and leaks" in DOC.read_text()


def _probe(method: str, path: str) -> tuple[str, str, dict[str, object]]:
    """A request that passes whatever the route checks after authentication only if it gets that far."""
    path = path.replace("{edge_id}", "cam-b").replace("{stream}", "s-1")
    body: dict[str, object] = {"max_fps": 0} if path.endswith("/throttle") else {}
    return method, path, body


async def test_the_hub_enforces_the_documented_scopes(hub: tuple[Hub, httpx.AsyncClient]) -> None:
    _, client = hub
    for (method, template), scope in ROUTE_SCOPES.items():
        if template == "/metrics":
            continue  # served by prometheus_client from the process registry: no auth either way
        method, path, body = _probe(method, template)
        kwargs: dict[str, object] = {"json": body} if method == "POST" else {}
        keyless = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
        if scope == PUBLIC:
            assert keyless.status_code not in (401, 403), (template, keyless.text)
            continue
        assert (keyless.status_code, keyless.json()["error"]["code"]) == (401, "unauthorized"), template
        holding = await client.request(method, path, headers={"X-API-Key": KEYS[scope]}, **kwargs)  # type: ignore[arg-type]
        assert holding.status_code not in (401, 403, 429), (template, holding.text)
        for other, key in KEYS.items():
            if other == scope or (other == "fleet:admin" and scope == "fleet:read"):
                continue
            r = await client.request(method, path, headers={"X-API-Key": key}, **kwargs)  # type: ignore[arg-type]
            assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), (template, other)


async def test_status_is_minimal_without_fleet_read(hub: tuple[Hub, httpx.AsyncClient]) -> None:
    _, client = hub
    keyless = (await client.get("/status")).json()
    assert set(keyless) == {"service", "version", "status", "degraded", "uptime_s"}
    full = (await client.get("/status", headers={"X-API-Key": KEYS["fleet:read"]})).json()
    assert full["pool"] and full["rate_limit"]["fail"] and full["fleet"] is not None
    assert (await client.get("/status", headers={"X-API-Key": KEYS["detect"]})).status_code == 403


async def test_row1_a_tenants_key_cannot_throttle_another_tenants_stream(idle_pool: InferencePool) -> None:
    """Issue #20 row 1: tenant A's (scope-less, as every key was before) key got 202 on tenant B's stream, whose
    id it read from the keyless GET /fleet."""
    settings = hub_settings(api_keys="tenant-a:key-a-0123456789,tenant-b:key-b-0123456789,"
                                     "ops:ops-0123456789:fleet:admin")
    hub = Hub(settings, idle_pool, bus=LocalBus(settings, service="hub"))
    await hub.start()
    try:
        assert hub.fleet is not None
        await hub.fleet.store.apply_status("cam-b", StatusMsg(online=True, session="s", reason="birth", birth_seq=1),
                                           1.0)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub_app(hub)), base_url="http://h") as client:
            assert (await client.get("/fleet")).status_code == 401
            assert (await client.get("/fleet/edges/cam-b")).status_code == 401
            url = "/fleet/edges/cam-b/streams/b-stream/throttle"
            body = {"max_fps": 0, "duration_s": 86400}
            assert (await client.post(url, json=body)).status_code == 401
            a = await client.post(url, json=body, headers={"X-API-Key": "key-a-0123456789"})
            assert (a.status_code, a.json()["error"]["code"]) == (403, "forbidden")
            ops = await client.post(url, json=body, headers={"X-API-Key": "ops-0123456789"})
            assert ops.status_code == 202, ops.text
    finally:
        await hub.stop()


async def test_unknown_keys_are_limited_per_client_and_counted(idle_pool: InferencePool) -> None:
    settings = hub_settings(api_keys="ops:ops-0123456789:fleet:admin", auth_failure_limit=3,
                            auth_failure_window=3600)
    hub = Hub(settings, idle_pool, bus=LocalBus(settings, service="hub"))
    await hub.start()

    def count(reason: str) -> float:
        return float(metrics.AUTH_FAILURES.labels(reason)._value.get())

    try:
        before = count("invalid"), count("limited")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub_app(hub)), base_url="http://h") as client:
            codes = [(await client.get("/fleet", headers={"X-API-Key": f"guess-{i}"})).status_code for i in range(5)]
            assert codes == [403, 403, 403, 429, 429]
            limited = await client.post("/detect-fingers", json={}, headers={"X-API-Key": "guess-x"})
            assert limited.status_code == 429 and limited.json()["error"]["code"] == "too_many_auth_failures"
            assert int(limited.headers["Retry-After"]) >= 1
            # the right key is never locked out by its address's failures
            assert (await client.get("/fleet", headers={"X-API-Key": "ops-0123456789"})).status_code == 200
        assert (count("invalid") - before[0], count("limited") - before[1]) == (3, 3)
    finally:
        await hub.stop()


def test_a_fleet_only_key_cannot_stream_on_the_edge(idle_pool: InferencePool) -> None:
    edge = EdgeNode(hub_settings(edge_id="doc-edge", auth_enabled=True, api_keys=API_KEYS), idle_pool)
    from starlette.applications import Starlette
    with TestClient(Starlette(routes=edge.routes)) as client:
        for key in (KEYS["fleet:read"], KEYS["fleet:admin"]):
            with client.websocket_connect(f"/ws?token={key}") as ws:
                message = ws.receive()
                assert message["type"] == "websocket.close" and message["code"] == 1008
                assert "lacks the 'detect' scope" in message["reason"]
        with client.websocket_connect(f"/ws?token={KEYS['detect']}") as ws:  # the detect key is let in
            assert ws.receive()["type"] == "websocket.send"


@pytest.mark.parametrize("spec,scopes,limit", [
    ("a:k", {"detect", "fleet:read"}, None),
    ("a:k:100/60", {"detect", "fleet:read"}, (100, 60.0)),
    ("a:k:fleet:admin", {"fleet:admin"}, None),
    ("a:k:detect+fleet:read+fleet:admin", set(SCOPES), None),
    ("a:k:100/60:detect", {"detect"}, (100, 60.0)),
])
def test_api_keys_carry_scopes(spec: str, scopes: set[str], limit: tuple[int, float] | None) -> None:
    (key,) = parse_api_keys(spec)
    assert (set(key.scopes), key.limit) == (scopes, limit)


@pytest.mark.parametrize("spec", ["a:k:fleet:write", "a:k:detect+", "a:k:0/60:detect", "a::detect"])
def test_bad_scopes_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"API_KEYS entry 1"):
        parse_api_keys(spec)


def test_the_document_names_no_placeholder() -> None:
    assert not re.search(r"\bTODO\b|\bTBD\b", DOC.read_text())
