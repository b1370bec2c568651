"""hub/routes_fleet.py: the fleet's REST routes in process (in-process bus, memory store): the throttle
request's rules, auth, 404 for an unknown edge, and the command that goes out on the bus. The same route
end to end over Mosquitto to a real edge: test_scenario_stream_throttle.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.middleware import Middleware

from hgr.common.auth import KeyRing
from hgr.common.config import load_settings
from hgr.common.messaging.bus import LocalBus
from hgr.hub import routes_fleet
from hgr.hub.access import Access
from hgr.hub.bodies import InvalidRequest
from hgr.hub.fleet import FleetService
from hgr.hub.fleet_logic import StatusMsg
from hgr.hub.middleware import EXCEPTION_HANDLERS, HubMiddleware
from hgr.hub.ratelimit import RateLimiter
from tests.support import eventually

KEY = "ops-key-0123456789"


@pytest.mark.parametrize("body,expected", [
    ({"max_fps": 2}, (2.0, None)), ({"max_fps": 0, "duration_s": 30}, (0.0, 30.0)),
    ({"max_fps": None}, (None, None)), ({"max_fps": 1.5, "duration_s": None}, (1.5, None)),
])
def test_a_throttle_request(body: dict[str, Any], expected: tuple[float | None, float | None]) -> None:
    assert routes_fleet.throttle_request(body) == expected


@pytest.mark.parametrize("body,fragment", [  # msgspec's words, against common.contracts.ThrottleRequest
    ([], "Expected `object`, got `array`"), ({}, "missing required field `max_fps`"),
    ({"max_fps": 1, "why": "x"}, "unknown field `why`"),
    ({"max_fps": "2"}, "`float | null`, got `str`"), ({"max_fps": True}, "`float | null`, got `bool`"),
    ({"max_fps": float("nan")}, r">= 0.0 - at `\$.max_fps`"), ({"max_fps": -1}, r">= 0.0 - at `\$.max_fps`"),
    ({"max_fps": 10_001}, r"<= 10000"), ({"max_fps": 1, "duration_s": 0}, r"> 0.0 - at `\$.duration_s`"),
    ({"max_fps": 1, "duration_s": 86_401}, r"<= 86400"),
])
def test_a_bad_throttle_request_says_why(body: object, fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        routes_fleet.throttle_request(body)


@pytest_asyncio.fixture
async def hub() -> AsyncIterator[tuple[httpx.AsyncClient, list[dict[str, Any]]]]:
    settings = load_settings({"AUTH_ENABLED": "true", "API_KEYS": f"ops:{KEY}:fleet:admin"}, env_file=None)
    bus = LocalBus(settings, service="hub")
    sent: list[dict[str, Any]] = []
    bus.subscribe("hgr/v1/edges/+/control", lambda t, p, props: sent.append({"topic": t, **json.loads(p)}))
    fleet = FleetService(settings, bus)
    await fleet.start()
    await fleet.store.apply_status("cam-1", StatusMsg(online=True, session="s1", reason="birth", birth_seq=1), 1.0)
    access = Access(settings, KeyRing.from_spec(settings.api_keys), RateLimiter(settings))
    app = Starlette(routes=routes_fleet.routes(fleet, access),
                    exception_handlers=EXCEPTION_HANDLERS, middleware=[Middleware(HubMiddleware)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        yield client, sent
    await fleet.stop()


async def test_the_route_sends_one_command_to_the_edge(hub: tuple[httpx.AsyncClient, list[dict[str, Any]]]) -> None:
    client, sent = hub
    url = "/fleet/edges/cam-1/streams/1a-3f9c2e/throttle"
    r = await client.post(url, json={"max_fps": 2, "duration_s": 30}, headers={"X-API-Key": KEY})
    assert r.status_code == 202, r.text
    command = {"cmd": "throttle", "stream": "1a-3f9c2e", "max_fps": 2, "reason": "operator", "duration_s": 30}
    assert r.json() == {"edge_id": "cam-1", "command": command}
    await eventually(lambda: sent, 5, "the command on the bus", interval=0.01)
    assert sent == [{"topic": "hgr/v1/edges/cam-1/control", **command}]


async def test_refusals_send_nothing(hub: tuple[httpx.AsyncClient, list[dict[str, Any]]]) -> None:
    client, sent = hub
    key = {"X-API-Key": KEY}
    cases = [("/fleet/edges/cam-1/streams/s/throttle", {}, 401, "unauthorized"),
             ("/fleet/edges/cam-1/streams/s/throttle", {"X-API-Key": "wrong"}, 403, "forbidden"),
             ("/fleet/edges/cam-9/streams/s/throttle", key, 404, "edge_not_found"),
             (f"/fleet/edges/cam-1/streams/{'s' * 65}/throttle", key, 422, "invalid_request")]
    for url, headers, status, code in cases:
        r = await client.post(url, json={"max_fps": 0}, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), url
    r = await client.post("/fleet/edges/cam-1/streams/s/throttle", json={"max_fps": -1}, headers=key)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
    # The bus delivers on the next loop turns: a valid command sent last arrives alone.
    await client.post("/fleet/edges/cam-1/streams/s/throttle", json={"max_fps": None}, headers=key)
    await eventually(lambda: sent, 5, "the valid command on the bus", interval=0.01)
    assert [c["max_fps"] for c in sent] == [None]


async def test_the_fleet_views(hub: tuple[httpx.AsyncClient, list[dict[str, Any]]]) -> None:
    client, _ = hub
    key = {"X-API-Key": KEY}  # fleet:admin brings fleet:read
    fleet = (await client.get("/fleet", headers=key)).json()
    assert [e["edge_id"] for e in fleet["edges"]] == ["cam-1"] and fleet["totals"]["online"] == 1
    assert (await client.get("/fleet/edges/cam-1", headers=key)).json()["status"] == "online"
    missing = await client.get("/fleet/edges/" + "x" * 100, headers=key)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "edge_not_found")
