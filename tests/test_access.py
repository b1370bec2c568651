"""hub/access.py (and the edge's scope check): every route enforces the scope ``ROUTE_SCOPES`` gives it,
proven by calling it without a key, with a key lacking the scope and with a key holding exactly it; the
minimal keyless /status; issue #20 row 1 (tenant A's key cannot throttle tenant B's stream, keyless
callers see no fleet); the limit on unknown keys and its metric."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.testclient import TestClient

from hgr.common import metrics
from hgr.common.auth import SCOPES
from hgr.common.inference.pool import InferencePool
from hgr.common.messaging.bus import LocalBus
from hgr.edge.app import EdgeNode
from hgr.hub.access import PUBLIC, ROUTE_SCOPES
from hgr.hub.app import Hub
from tests.hub_support import SEEDED_EDGE_STALE_AFTER, hub_app, hub_settings, seed_edge

KEYS = {scope: f"key-{scope.replace(':', '-')}-0123456789" for scope in SCOPES}
API_KEYS = ",".join(f"only-{scope.replace(':', '-')}:{key}:{scope}" for scope, key in KEYS.items())


@pytest.fixture(scope="module")
def idle_pool(model_path: str) -> InferencePool:
    return InferencePool(hub_settings(), {"full": model_path}, service="hub", workers=1)  # never started

@pytest_asyncio.fixture
async def hub(idle_pool: InferencePool) -> AsyncIterator[tuple[Hub, httpx.AsyncClient]]:
    settings = hub_settings(auth_enabled=True, api_keys=API_KEYS, rate_limit_requests=10_000,
                            edge_stale_after=SEEDED_EDGE_STALE_AFTER)
    hub = Hub(settings, idle_pool, bus=LocalBus(settings, service="hub"))
    await hub.start()
    await seed_edge(hub, "cam-b")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub_app(hub)), base_url="http://hub") as client:
        yield hub, client
    await hub.stop()

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
                                     "ops:ops-0123456789:fleet:admin", edge_stale_after=SEEDED_EDGE_STALE_AFTER)
    hub = Hub(settings, idle_pool, bus=LocalBus(settings, service="hub"))
    await hub.start()
    try:
        await seed_edge(hub, "cam-b")
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
    with TestClient(Starlette(routes=edge.routes)) as client:
        for key in (KEYS["fleet:read"], KEYS["fleet:admin"]):
            with client.websocket_connect(f"/ws?token={key}") as ws:
                message = ws.receive()
                assert message["type"] == "websocket.close" and message["code"] == 1008
                assert "lacks the 'detect' scope" in message["reason"]
        with client.websocket_connect(f"/ws?token={KEYS['detect']}") as ws:  # the detect key is let in
            assert ws.receive()["type"] == "websocket.send"
