"""A hub throttles one *stream* of an edge over MQTT: a real broker, a real FleetService issuing the
command, a real EdgeNode (one-worker pool, the real model) behind uvicorn, real WebSocket clients."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection

from hgr.common.config import load_settings
from hgr.common.inference.pool import InferencePool
from hgr.common.messaging.bus import MqttBus, make_bus
from hgr.edge import protocol
from hgr.edge.app import EdgeNode
from hgr.edge.reporter import EdgeReporter
from hgr.hub.fleet import FleetService
from hgr.loadtest.ws_stream import open_stream
from tests.hub_support import serve_hub
from tests.support import eventually, recv_msg, serve_edge

on_module_loop = pytest.mark.asyncio(loop_scope="module")  # the shared pool lives on the module loop


def _throttled_total() -> float:
    return REGISTRY.get_sample_value("hgr_frames_dropped_total", {"reason": "throttled"}) or 0.0



# --- hub → broker → edge → WebSocket clients ---

class Fleet:
    def __init__(self, node: EdgeNode, hub: FleetService, hub_bus: MqttBus, url: str, edge_id: str,
                 control: str) -> None:
        self.node, self.hub, self.hub_bus = node, hub, hub_bus
        self.url, self.edge_id, self.control = url, edge_id, control

    @property
    def reporter(self) -> Any:
        return self.node.reporter

    def raw(self, payload: bytes) -> None:
        """A control message as any client of the broker could send it."""
        self.hub_bus.publish(self.control, payload, qos=1)


def fleet_env(mqtt_url: str) -> tuple[str, dict[str, str]]:
    """A fresh tag and the settings a hub and an edge share on the machine's broker, under their own topics."""
    tag = uuid.uuid4().hex[:8]
    return tag, {"MQTT_URL": mqtt_url, "MQTT_TOPIC_PREFIX": f"test/{tag}", "MQTT_SHARE_GROUP": f"g{tag}",
                 "MQTT_SESSION_EXPIRY": "0", "METRICS_INTERVAL": "0.5", "EVENT_DEBOUNCE_MS": "0",
                 "MAX_FPS": "1000", "MQTT_KEEPALIVE": "5"}


@pytest_asyncio.fixture(loop_scope="module")
async def fleet(mqtt_url: str, edge_pool: InferencePool) -> AsyncIterator[Fleet]:
    tag, env = fleet_env(mqtt_url)
    edge_id = f"edge-{tag}"
    edge_settings = load_settings({**env, "EDGE_ID": edge_id}, env_file=None)
    hub_settings = load_settings(env, env_file=None)
    hub_bus = MqttBus(hub_settings, service="hub", client_id=f"hub-{tag}")
    hub = FleetService(hub_settings, hub_bus)
    await hub.start()
    try:
        async with serve_edge(edge_settings, edge_pool, bus=make_bus(edge_settings)) as (node, url):
            async def online() -> bool:
                view = await hub.fleet_view()
                return any(e["edge_id"] == edge_id and e["status"] == "online" for e in view["edges"])

            # The edge subscribes to its control topic before it publishes its birth.
            await eventually(online, 30, "the edge online at the hub")
            yield Fleet(node, hub, hub_bus, url, edge_id, f"test/{tag}/edges/{edge_id}/control")
    finally:
        await hub.stop()


async def _result(ws: ClientConnection, seq: int) -> dict[str, Any]:
    """Read until the result of ``seq``."""
    while (msg := await recv_msg(ws))["type"] != "result" or msg["seq"] != seq:
        pass
    return msg


@on_module_loop
async def test_hub_throttles_one_stream_and_lifts_it(fleet: Fleet, frames: list[bytes]) -> None:
    node, reporter = fleet.node, fleet.reporter
    a, hello_a = await open_stream(fleet.url)
    b, hello_b = await open_stream(fleet.url)
    stream_a, stream_b = hello_a["stream"], hello_b["stream"]
    before = _throttled_total()

    # Throttled to 0: every frame of A is dropped; B, on the same edge, keeps getting results.
    fleet.hub.throttle_stream(fleet.edge_id, stream_a, 0)
    await eventually(lambda: reporter.control_received.get("throttle") == 1, 30, "the throttle at the edge")
    for seq in range(4):
        await a.send(protocol.encode_frame(seq, frames[seq]))
    for seq in range(3):
        await b.send(protocol.encode_frame(seq, frames[seq]))
        msg = await _result(b, seq)
        assert msg["dropped"] == 0
    await eventually(lambda: node.stats()["frames_dropped"].get("throttled") == 4, 30, "A's 4 frames dropped")
    assert _throttled_total() - before == 4

    # Unknown stream ids and malformed commands change nothing.
    fleet.hub.throttle_stream(fleet.edge_id, "ffff-000000", None)
    fleet.raw(b"not json")
    fleet.raw(json.dumps({"cmd": "throttle", "stream": ["x"], "max_fps": None}).encode())
    fleet.raw(json.dumps({"cmd": "throttle", "stream": stream_a, "max_fps": "none"}).encode())
    fleet.raw(json.dumps({"cmd": "throttle", "stream": stream_a, "max_fps": None, "duration_s": -1}).encode())
    fleet.raw(json.dumps({"cmd": "throttle", "stream": stream_b, "key": "k", "max_fps": 0}).encode())
    await eventually(lambda: reporter.control_ignored == {"unknown_stream": 1, "invalid": 5}, 30,
                     "the ignored commands")
    await a.send(protocol.encode_frame(4, frames[4]))
    await b.send(protocol.encode_frame(3, frames[3]))
    assert (await _result(b, 3))["dropped"] == 0
    await eventually(lambda: node.stats()["frames_dropped"].get("throttled") == 5, 30, "A still throttled")

    # Lifted explicitly: A's next result reports the frames the throttle dropped.
    fleet.hub.throttle_stream(fleet.edge_id, stream_a, None)
    await eventually(lambda: reporter.control_received.get("throttle") == 2, 30, "the lift at the edge")
    await a.send(protocol.encode_frame(5, frames[5]))
    assert (await _result(a, 5))["dropped"] == 5

    # With duration_s the edge lifts it by itself.
    fleet.hub.throttle_stream(fleet.edge_id, stream_a, 0, duration_s=1.0)
    session_a = next(s for s in node.sessions if s.stream_id == stream_a)
    await eventually(lambda: session_a.throttle is not None, 30, "the timed throttle at the edge")
    await a.send(protocol.encode_frame(6, frames[0]))
    await eventually(lambda: node.stats()["frames_dropped"].get("throttled") == 6, 30, "frame 6 dropped")
    await eventually(lambda: session_a.throttle is None and not reporter._lifts, 30, "the throttle lifted after 1 s")
    await a.send(protocol.encode_frame(7, frames[1]))
    assert (await _result(a, 7))["dropped"] == 1
    assert _throttled_total() - before == 6

    # A throttle does not outlive its stream: closing B drops its gate and its pending lift.
    fleet.hub.throttle_stream(fleet.edge_id, stream_b, 0, duration_s=600)
    await eventually(lambda: ("stream", stream_b) in reporter._lifts, 30, "B's throttle and lift timer")
    await b.close()
    await eventually(lambda: not reporter._lifts and len(node.sessions) == 1, 30, "B's timer gone with B")
    fleet.hub.throttle_stream(fleet.edge_id, stream_b, 0)  # B is gone: nothing to throttle
    await eventually(lambda: reporter.control_ignored.get("unknown_stream") == 2, 30, "the command for B ignored")
    await a.send(protocol.encode_frame(8, frames[2]))
    assert (await _result(a, 8))["dropped"] == 0
    await a.close()


# --- the REST route: operator → hub (HTTP) → broker → edge → WebSocket clients ---

OPERATOR_KEY = "operator-secret-key-1"


@pytest_asyncio.fixture(loop_scope="module")
async def rest_fleet(mqtt_url: str, edge_pool: InferencePool) -> AsyncIterator[tuple[str, EdgeNode, str, str]]:
    """A real hub (uvicorn, auth on) with its fleet service on Mosquitto, and a real edge on the same
    broker; yields (hub base url, edge node, edge WebSocket url, edge id)."""
    tag, env = fleet_env(mqtt_url)
    edge_id = f"edge-{tag}"
    edge_settings = load_settings({**env, "EDGE_ID": edge_id}, env_file=None)
    hub_settings = load_settings({**env, "AUTH_ENABLED": "true", "API_KEYS": f"ops:{OPERATOR_KEY}:detect+fleet:admin"},
                                 env_file=None, workers=1)
    hub_bus = MqttBus(hub_settings, service="hub", client_id=f"hub-{tag}")
    async with serve_hub(hub_settings, edge_pool, bus=hub_bus) as (hub_url, hub), \
            serve_edge(edge_settings, edge_pool, bus=make_bus(edge_settings)) as (node, ws_url):
        fleet_service = hub.fleet
        assert fleet_service is not None

        async def online() -> bool:
            view = await fleet_service.fleet_view()
            return any(e["edge_id"] == edge_id and e["status"] == "online" for e in view["edges"])

        await eventually(online, 30, "the edge online at the hub")
        yield hub_url, node, ws_url, edge_id


@on_module_loop
async def test_rest_route_throttles_a_stream_end_to_end(rest_fleet: tuple[str, EdgeNode, str, str],
                                                        frames: list[bytes]) -> None:
    hub_url, node, ws_url, edge_id = rest_fleet
    reporter = node.reporter
    assert isinstance(reporter, EdgeReporter)
    a, hello_a = await open_stream(ws_url)
    b, _ = await open_stream(ws_url)
    path = f"/fleet/edges/{edge_id}/streams/{hello_a['stream']}/throttle"
    key = {"X-API-Key": OPERATOR_KEY}
    async with httpx.AsyncClient(base_url=hub_url, timeout=30) as http:
        async def refused(status: int, code: str, url: str = path, **kwargs: Any) -> None:
            r = await http.post(url, **kwargs)
            assert r.status_code == status and r.json()["error"]["code"] == code, r.text

        # A control: a key with fleet:admin is required, and bad requests never reach the edge.
        await refused(401, "unauthorized", json={"max_fps": 0})
        await refused(403, "forbidden", json={"max_fps": 0}, headers={"X-API-Key": "not-a-key"})
        await refused(400, "bad_json", content=b"{max_fps", headers={**key, "Content-Type": "application/json"})
        for body in ({}, {"max_fps": -1}, {"max_fps": True}, {"max_fps": "2"}, {"max_fps": 1, "duration_s": 0},
                     {"max_fps": 1, "colour": "red"}, [1]):
            await refused(422, "invalid_request", json=body, headers=key)
        await refused(404, "edge_not_found", url=f"/fleet/edges/nobody-{edge_id}/streams/s/throttle",
                      json={"max_fps": 0}, headers=key)
        assert reporter.control_received.get("throttle") is None

        # Throttled to 0 over REST: A's frames are dropped at the edge, B's keep being answered.
        r = await http.post(path, json={"max_fps": 0}, headers=key)
        assert r.status_code == 202, r.text
        assert r.json() == {"edge_id": edge_id, "command": {"cmd": "throttle", "stream": hello_a["stream"],
                                                            "max_fps": 0, "reason": "operator"}}
        await eventually(lambda: reporter.control_received.get("throttle") == 1, 30, "the throttle at the edge")
        for seq in range(3):
            await a.send(protocol.encode_frame(seq, frames[seq]))
        await b.send(protocol.encode_frame(0, frames[0]))
        assert (await _result(b, 0))["dropped"] == 0
        await eventually(lambda: node.stats()["frames_dropped"].get("throttled") == 3, 30, "A's 3 frames dropped")

        # null lifts it: A's next result counts the frames the throttle dropped.
        assert (await http.post(path, json={"max_fps": None}, headers=key)).status_code == 202
        await eventually(lambda: reporter.control_received.get("throttle") == 2, 30, "the lift at the edge")
        await a.send(protocol.encode_frame(3, frames[3]))
        assert (await _result(a, 3))["dropped"] == 3

        # With duration_s the edge lifts the cap by itself.
        r = await http.post(path, json={"max_fps": 0, "duration_s": 1}, headers=key)
        assert r.status_code == 202 and r.json()["command"]["duration_s"] == 1
        session_a = next(s for s in node.sessions if s.stream_id == hello_a["stream"])
        await eventually(lambda: session_a.throttle is not None, 30, "the timed throttle at the edge")
        await eventually(lambda: session_a.throttle is None, 30, "the throttle lifted after 1 s")
    await a.close()
    await b.close()
