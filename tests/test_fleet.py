"""hub/fleet.py: FleetService in-process against the real broker and real Redis: REST view, invalid payloads,
staleness, gap → rebirth, the fleet-wide key quota → throttle, Prometheus series; and the all-in-one
path (in-process bus, memory store)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.middleware import Middleware

from hgr.common import metrics
from hgr.common.auth import KeyRing
from hgr.common.config import load_settings
from hgr.common.contracts import ResultMessage
from hgr.common.messaging.bus import LocalBus, MqttBus
from hgr.common.messaging.topics import encode
from hgr.edge.reporter import EdgeReporter
from hgr.hub import routes_fleet
from hgr.hub.access import Access
from hgr.hub.fleet import FleetService
from hgr.hub.middleware import HubMiddleware
from hgr.hub.ratelimit import RateLimiter
from tests.fleet_helpers import StandInNode
from tests.support import eventually

VIEWER_KEY = "viewer-key-0123456789"


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def env(mqtt_url: str, redis_url: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {"MQTT_URL": mqtt_url, "MQTT_TOPIC_PREFIX": f"test/{tag}", "REDIS_KEY_PREFIX": f"test:{tag}:",
            "MQTT_SHARE_GROUP": f"g{tag}", "MQTT_SESSION_EXPIRY": "0", "METRICS_INTERVAL": "0.2",
            "EVENT_DEBOUNCE_MS": "0", "EDGE_STALE_AFTER": "30", "MQTT_KEEPALIVE": "5"}


async def _cleanup(client: aioredis.Redis, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(f"*{prefix}*")]
    if keys:
        await client.delete(*keys)


def _client(service: FleetService) -> httpx.AsyncClient:
    # As the hub serves them: HubMiddleware turns the fleet's errors into the common error body.
    # The fleet views need a key with fleet:read (docs/security.md): the client sends one.
    keyring = KeyRing.from_spec(f"viewer:{VIEWER_KEY}:fleet:read")
    access = Access(service.settings, keyring, RateLimiter(service.settings))
    app = Starlette(routes=routes_fleet.routes(service, access), middleware=[Middleware(HubMiddleware)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub",
                             headers={"X-API-Key": VIEWER_KEY})


async def test_edges_report_and_the_hub_serves_the_fleet(env: dict[str, str], redis_client: aioredis.Redis) -> None:
    settings = load_settings({**env, "FLEET_QUOTA_FRAMES": "50", "RATE_LIMIT_WINDOW": "60"}, env_file=None)
    hub_bus = MqttBus(settings, service="hub", client_id=f"hub-{env['MQTT_SHARE_GROUP']}")
    service = FleetService(settings, hub_bus, redis_client)
    await service.start()
    assert await hub_bus.wait_connected(10)
    nodes, reporters = {}, []
    for edge_id in ("edge-1", "edge-2"):
        edge_settings = load_settings({**env, "EDGE_ID": edge_id}, env_file=None)
        nodes[edge_id] = StandInNode()
        reporter = EdgeReporter(edge_settings, MqttBus(edge_settings, client_id=f"{edge_id}-{env['MQTT_SHARE_GROUP']}"),
                                nodes[edge_id])
        await reporter.start()
        reporters.append(reporter)
    client = _client(service)
    try:
        async def both_online() -> dict[str, Any] | None:
            body = (await client.get("/fleet")).json()
            online = {e["edge_id"] for e in body["edges"] if e["status"] == "online"}
            return body if online == {"edge-1", "edge-2"} and all(e["metrics_seq"] for e in body["edges"]) else None

        body = await eventually(both_online, 30, "both edges online with metrics")
        assert body["totals"]["edges"] == 2 and body["totals"]["online"] == 2
        edge = (await client.get("/fleet/edges/edge-1")).json()
        assert edge["version"] == settings.app_version and edge["latency_ms"]["p95"] == 9.5
        assert edge["connections"] == 1 and edge["drops"] == 2 and edge["capabilities"]["control"]
        missing = await client.get("/fleet/edges/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "edge_not_found"

        # Garbage on the fleet topics is counted and dropped; ingest goes on.
        prefix = env["MQTT_TOPIC_PREFIX"]
        for bad in (b"{]", b'{"session": 1}', b"\x00\x01", b'{"status": "online"}'):
            hub_bus.publish(f"{prefix}/edges/edge-1/metrics", bad, qos=1)
            hub_bus.publish(f"{prefix}/edges/edge-1/events", bad, qos=1)
        hub_bus.publish(f"{prefix}/edges/bad/status", b'{"status": "online"}', qos=1)
        await eventually(lambda: service.ingested["invalid"] >= 9, 10, "the invalid messages to be counted")
        seq_before = edge["metrics_seq"]
        await eventually(lambda: client.get("/fleet/edges/edge-1"), 5)
        await eventually(async_seq_above(client, "edge-1", seq_before), 10, "ingest to go on")

        # Fleet quota: 60 frames of alice on edge-1 > 50 → every online edge is told to stop alice.
        nodes["edge-1"].processed, nodes["edge-1"].by_key = 60, {"alice": 60}
        await eventually(lambda: all(("alice", 0.0) in n.throttles for n in nodes.values()), 20,
                         "the throttle command on both edges")
        assert metrics.FLEET_KEY_FRAMES.labels("alice")._value.get() >= 60

        # Prometheus: per-edge series exist (the sweep refreshes them).
        await eventually(lambda: metrics.FLEET_EDGE_UP.labels("edge-2")._value.get() == 1, 10, "edge_up")

        # Clean shutdown of edge-2 → offline (reason shutdown) on the hub.
        await reporters[1].stop()
        await eventually(async_status(client, "edge-2", "offline", "shutdown"), 10, "edge-2 offline")
    finally:
        await reporters[0].stop()
        await service.stop()
        await client.aclose()
        await _cleanup(redis_client, env["REDIS_KEY_PREFIX"])


def async_seq_above(client: httpx.AsyncClient, edge_id: str, seq: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool((await client.get(f"/fleet/edges/{edge_id}")).json()["metrics_seq"] > seq)
    return check


def async_status(client: httpx.AsyncClient, edge_id: str, status: str, reason: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        body = (await client.get(f"/fleet/edges/{edge_id}")).json()
        return bool(body["status"] == status and body["reason"] == reason)
    return check


async def test_gap_asks_for_rebirth_and_silence_marks_stale(env: dict[str, str], redis_client: aioredis.Redis) -> None:
    settings = load_settings({**env, "EDGE_STALE_AFTER": "2"}, env_file=None)
    hub_bus = MqttBus(settings, service="hub", client_id=f"hub-{env['MQTT_SHARE_GROUP']}")
    service = FleetService(settings, hub_bus, redis_client)
    service.gap_grace_s = 0.5
    await service.start()
    assert await hub_bus.wait_subscribed(10)
    prefix = env["MQTT_TOPIC_PREFIX"]
    controls: list[dict[str, Any]] = []
    edge = MqttBus(settings, client_id=f"fake-{env['MQTT_SHARE_GROUP']}")
    edge.subscribe(f"{prefix}/edges/fake/control", lambda t, p, props: controls.append(json.loads(p)))
    await edge.start()
    assert await edge.wait_subscribed(10)
    client = _client(service)

    def send(kind: str, doc: dict[str, Any]) -> None:
        payload, ct = encode({"edge_id": "fake", "session": "s1", **doc})
        edge.publish(f"{prefix}/edges/fake/{kind}", payload, qos=1, retain=kind == "status", content_type=ct)

    try:
        send("status", {"status": "online", "birth_seq": 1, "metrics_seq": 0})
        for seq in (1, 2, 5):  # 3 and 4 never come
            send("metrics", {"seq": seq, "fps": 1.0})
        await eventually(async_seq_above(client, "fake", 4), 10, "seq 5 stored")
        # The hole is declared by the first batch after the (shortened) grace: keep the edge reporting
        # (seq 6, 7, ...) until the hub asks it for a rebirth.
        later: list[int] = []

        def rebirth_requested() -> bool:
            later.append(6 + len(later))
            send("metrics", {"seq": later[-1]})
            return {"cmd": "rebirth", "reason": "sequence_gap"} in controls

        await eventually(rebirth_requested, 10, "a rebirth request", interval=0.2)

        async def around_for_stale_after() -> bool:
            # Silence marks stale only an edge heard from for EDGE_STALE_AFTER (2 s); a briefer one is
            # forgotten instead (tests/test_fleet_store.py): keep reporting until the hub has seen that long.
            later.append(6 + len(later))
            send("metrics", {"seq": later[-1]})
            view = (await client.get("/fleet/edges/fake")).json()
            return bool(view["last_seen"] - view["online_since"] > 2.0)

        await eventually(around_for_stale_after, 10, "the edge around for EDGE_STALE_AFTER", interval=0.2)

        async def counted() -> dict[str, Any]:
            messages = (await client.get("/fleet/edges/fake")).json()["messages"]
            return messages if messages["metrics"] == 3 + len(later) else {}

        messages = await eventually(counted, 10, "every metrics message stored")
        assert messages["gaps"] == 2  # 3 and 4, counted once
        # silence: stale after EDGE_STALE_AFTER (2 s), no Will involved
        await eventually(async_status(client, "fake", "offline", "stale"), 20, "stale")
        send("status", {"status": "offline", "reason": "shutdown"})  # clears nothing but is accepted
    finally:
        edge.publish(f"{prefix}/edges/fake/status", b"", qos=1, retain=True)
        await edge.flush(5)
        await edge.stop()
        await service.stop()
        await client.aclose()
        await _cleanup(redis_client, env["REDIS_KEY_PREFIX"])


async def test_all_in_one_path_in_process_bus_and_memory_store() -> None:
    settings = load_settings({"EDGE_ID": "solo", "METRICS_INTERVAL": "0.1", "EVENT_DEBOUNCE_MS": "0",
                              "EDGE_FORGET_AFTER": "1", "EDGE_STALE_AFTER": "1"}, env_file=None)
    bus = LocalBus(settings)
    service = FleetService(settings, bus, None)
    await bus.start()
    await service.start()
    node = StandInNode()
    reporter = EdgeReporter(settings, bus, node)
    await reporter.start()
    client = _client(service)
    try:
        await eventually(async_seq_above(client, "solo", 2), 10, "metrics through the in-process bus")
        await service.refresh_gauges()
        assert "solo" in {s.labels.get("edge_id") for m in metrics.FLEET_EDGE_UP.collect() for s in m.samples}
        reporter.on_frame("s", None, cast(ResultMessage, {"hands": [], "total_fingers": 0}))  # what it reads
        await eventually(lambda: client.get("/fleet/edges/solo"), 5)

        async def has_event() -> bool:
            return bool((await client.get("/fleet/edges/solo")).json()["messages"]["events"] >= 1)
        await eventually(has_event, 10, "the event")
        assert service.status()["store"] == "memory"
        await reporter.stop()
        await eventually(async_status(client, "solo", "offline", "shutdown"), 10, "offline")
        # forgotten after EDGE_FORGET_AFTER: gone from /fleet and from Prometheus

        async def forgotten() -> bool:
            return (await client.get("/fleet/edges/solo")).status_code == 404
        await eventually(forgotten, 15, "the edge to be forgotten")
        await service.refresh_gauges()
        assert "solo" not in {s.labels.get("edge_id") for m in metrics.FLEET_EDGE_UP.collect() for s in m.samples}
    finally:
        await service.stop()
        await bus.stop()
        await client.aclose()


async def test_key_series_go_when_no_edge_named_them_for_two_windows() -> None:
    """hgr_fleet_key_frames stays the size of the keys in use, not of every name ever reported."""
    settings = load_settings({"FLEET_QUOTA_FRAMES": "1000000", "RATE_LIMIT_WINDOW": "60"}, env_file=None)
    service = FleetService(settings, LocalBus(settings), None)
    tag = uuid.uuid4().hex[:6]

    def series() -> set[str]:
        return {s.labels["key"] for m in metrics.FLEET_KEY_FRAMES.collect() for s in m.samples
                if s.labels["key"].startswith(tag)}

    await service._apply_quota({f"{tag}-old": 1, f"{tag}-kept": 1}, 60.0 * 100)  # window 100
    await service._apply_quota({f"{tag}-kept": 1}, 60.0 * 101)  # window 101: old is one window behind
    assert series() == {f"{tag}-old", f"{tag}-kept"}
    await service._apply_quota({f"{tag}-kept": 1}, 60.0 * 102)  # two windows unnamed: gone
    assert series() == {f"{tag}-kept"}


async def test_statuses_queue_per_edge_and_a_will_goes_first() -> None:
    """A flood of one edge's births coalesces to its last few; another edge's Will is applied first."""
    settings = load_settings({}, env_file=None)
    service = FleetService(settings, LocalBus(settings), None)
    births = [json.dumps({"status": "online", "session": "f", "birth_seq": i}).encode() for i in range(1, 1001)]
    for payload in births:
        service._on_status("hgr/v1/edges/flood/status", payload, {})
    service._on_status("hgr/v1/edges/other/status", b'{"status": "offline", "session": "o", "reason": "will"}', {})
    assert list(service._status_turns) == ["other", "flood"]
    assert [m.birth_seq for m, _ in service._status_pending["flood"]] == [997, 998, 999, 1000]
