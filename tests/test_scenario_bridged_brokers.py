"""More than one broker: two edge sites, each with its own Mosquitto bridged to a central one (the
shipped deploy/mosquitto configs), two hubs on the central broker (shipped config, auth and ACL), one
edge reporter per site. End to end and counted:

- retained births cross the bridges: hubs started after the edges see them online by their birth;
- control messages reach the right edge only (a stream throttle to edge-a, a rebirth to edge-b);
- a WAN outage of site A's bridge link (both brokers up): the site broker queues, then replays;
- site B's broker restarted: the edge's own outbox holds its messages, then replays;
- a crashed edge (its connection dropped without DISCONNECT): its Last Will reaches the hubs;
- every metrics message published is counted exactly once by the hubs (no gap, none twice).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import redis.asyncio as aioredis
from fleet_helpers import USERS, Broker, EdgeSiteBroker, LinkCut, StandInNode
from paho.mqtt.enums import CallbackAPIVersion
from support import eventually, poll

from hgr.common.bus import MqttBus
from hgr.common.config import load_settings
from hgr.edge.reporter import EdgeReporter
from hgr.hub.fleet import FleetService

pytestmark = pytest.mark.asyncio(loop_scope="function")

PREFIX = "hgr/v1"  # the shipped ACL is written for it
BURST = 10  # metrics messages published during each outage


def _retained_births(port: int) -> set[str]:
    """Edge ids whose retained status on the broker at ``port`` is a birth, as a new subscriber (the
    observer user) gets them within a second."""
    seen: set[str] = set()
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.retain and json.loads(msg.payload).get("status") == "online":
            seen.add(msg.topic.split("/")[-2])

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("observer", USERS["observer"])
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}/edges/+/status", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        subscribed.wait(5)
        poll(lambda: len(seen) >= 2, 1, "retained births", interval=0.05) if subscribed.is_set() else None
    except AssertionError:
        pass  # fewer than two: the caller polls again
    finally:
        client.loop_stop()
        client.disconnect()
    return seen


@pytest.fixture
def sites(tmp_path: Path) -> Any:
    """The central broker; site A bridged to it through a link that can be cut, site B directly."""
    central = Broker(tmp_path / "central").start()
    link = LinkCut(central.port)
    site_a = EdgeSiteBroker(tmp_path / "site-a", "edge-a", f"127.0.0.1:{link.port}")
    site_b = EdgeSiteBroker(tmp_path / "site-b", "edge-b", f"127.0.0.1:{central.port}")
    yield central, {"edge-a": site_a, "edge-b": site_b}, link
    for broker in (site_a, site_b, central):
        broker.stop()


async def test_two_bridged_sites_end_to_end_with_counts(
        sites: Any, private_redis: tuple[str, subprocess.Popen[bytes]]) -> None:
    central, site, link = sites
    await link.restore()
    site["edge-a"].start()
    site["edge-b"].start()
    redis_url, _ = private_redis
    tag = uuid.uuid4().hex[:8]
    base = {"MQTT_TOPIC_PREFIX": PREFIX, "METRICS_INTERVAL": "0.2", "EVENT_DEBOUNCE_MS": "0",
            "MQTT_KEEPALIVE": "5", "MQTT_OUTBOX_SETTLE": "0.5", "EDGE_STALE_AFTER": "60"}

    # The hubs first: a metrics message published while no hub subscribes is dropped by the broker
    # (and shows as a gap), so the counts below start from the edges' first message.
    hub_env = {**base, "MQTT_URL": central.url("hub")}
    redis_client = aioredis.Redis.from_url(redis_url)
    hubs: list[FleetService] = []

    async def start_hub(name: str, key_prefix: str) -> FleetService:  # one share group per store
        settings = load_settings({**hub_env, "REDIS_KEY_PREFIX": key_prefix, "MQTT_SHARE_GROUP": f"{key_prefix}{tag}"},
                                 env_file=None)
        bus = MqttBus(settings, service="hub", client_id=f"{name}-{tag}")
        hub = FleetService(settings, bus, redis_client)
        await hub.start()
        assert await bus.wait_connected(10)
        return hub
    for i in range(2):
        hubs.append(await start_hub(f"hub-{i}", "hgr:"))
    store = hubs[0].store

    nodes: dict[str, StandInNode] = {}
    reporters: dict[str, EdgeReporter] = {}
    for edge_id in ("edge-a", "edge-b"):
        settings = load_settings({**base, "EDGE_ID": edge_id, "MQTT_URL": site[edge_id].url()}, env_file=None)
        nodes[edge_id] = StandInNode()
        nodes[edge_id].streams = {"cam-1"}  # both edges have a stream of that name: a misrouted command would land
        reporters[edge_id] = EdgeReporter(settings, MqttBus(settings, client_id=f"{edge_id}-{tag}"), nodes[edge_id])
        await reporters[edge_id].start()

    # Retained births cross the bridges: a new subscriber on the central broker gets them, and a hub
    # started late (with a store of its own) knows both edges online by their birth, not by metrics.
    async def both_retained() -> bool:
        return await asyncio.to_thread(_retained_births, central.port) == {"edge-a", "edge-b"}
    await eventually(both_retained, 30, "both births retained on the central broker")
    late = await start_hub("late-hub", f"late{tag}:")
    try:
        for edge_id in ("edge-a", "edge-b"):
            h = await eventually(lambda e=edge_id: late.store.edge(e), 30, f"{edge_id} known to the late hub")
            assert h["status"] == "online" and h["reason"] == "birth", h
    finally:
        await late.stop()

    async def edge(edge_id: str) -> dict[str, str]:
        return await store.edge(edge_id) or {}

    async def counted(edge_id: str, at_least: int) -> bool:
        h = await edge(edge_id)
        return int(h.get("msgs", 0)) >= at_least

    try:
        await eventually(lambda: counted("edge-a", 3), 30, "metrics of edge-a through the bridge")
        await eventually(lambda: counted("edge-b", 3), 30, "metrics of edge-b through the bridge")

        # Control: to the right edge only.
        hubs[0].throttle_stream("edge-a", "cam-1", 5.0)
        await eventually(lambda: nodes["edge-a"].stream_throttles == [("cam-1", 5.0)], 15, "the throttle on edge-a")
        await hubs[1]._request_rebirth("edge-b")  # what a sequence gap triggers
        await eventually(lambda: _birth_seq_is(edge("edge-b"), 2), 15, "edge-b born again")
        assert nodes["edge-b"].stream_throttles == [] and (await edge("edge-a"))["birth_seq"] == "1"

        # Site A's WAN link down, both brokers up: site A's broker queues for the bridge.
        await link.cut()
        cut_at = reporters["edge-a"].metrics_seq
        await eventually(lambda: reporters["edge-a"].metrics_seq >= cut_at + BURST, 30, "edge-a publishing on")
        assert int((await edge("edge-a"))["msgs"]) <= cut_at  # nothing got through the cut link
        await link.restore()
        await eventually(lambda: counted("edge-a", cut_at + BURST), 60, "site A's queue replayed")

        # Site B's broker restarted: edge-b's own outbox holds what it publishes meanwhile.
        site["edge-b"].stop()
        down_at = reporters["edge-b"].metrics_seq
        await eventually(lambda: reporters["edge-b"].metrics_seq >= down_at + BURST, 30, "edge-b publishing on")
        site["edge-b"].start()
        await eventually(lambda: counted("edge-b", down_at + BURST), 60, "edge-b's outbox replayed")

        # edge-b crashes: its connection drops without a DISCONNECT, so site B's broker sends its Will.
        final_b = await _all_counted(reporters["edge-b"], edge)
        bus_b = reporters["edge-b"].bus
        assert isinstance(bus_b, MqttBus)
        paho_b = bus_b.client
        paho_b.loop_stop()
        paho_b.socket().close()
        await eventually(lambda: _status_is(edge("edge-b"), "offline", "will"), 30, "edge-b's Will at the hubs")

        # edge-a stops cleanly; then every message of both edges is counted exactly once.
        final_a = await _all_counted(reporters["edge-a"], edge)
        await reporters.pop("edge-a").stop()
        await eventually(lambda: _status_is(edge("edge-a"), "offline", "shutdown"), 30, "edge-a's shutdown")
        for edge_id, published in (("edge-a", final_a), ("edge-b", final_b)):
            h = await edge(edge_id)
            assert int(h["msgs"]) == published and int(h.get("gaps", 0)) == 0, (edge_id, published, h)
            print(f"{edge_id}: {published} metrics published, {h['msgs']} counted, {h.get('gaps', 0)} gaps, "
                  f"{h.get('dups', 0)} duplicates dropped")
    finally:
        await link.cut()
        for reporter in reporters.values():  # edge-b's bus is torn down already: end its metrics task only
            reporter._started = False
            if reporter._task:
                reporter._task.cancel()
        for hub in hubs:
            await hub.stop()
        await redis_client.aclose()


async def _all_counted(reporter: EdgeReporter, edge: Any) -> int:
    """Pause the edge's metrics (its reporter's loop), then wait until the hubs have counted every one
    it published."""
    assert reporter._task is not None
    reporter._task.cancel()
    await asyncio.gather(reporter._task, return_exceptions=True)
    published = reporter.metrics_seq

    async def caught_up() -> bool:
        return int((await edge(reporter.edge_id)).get("msgs", 0)) >= published
    await eventually(caught_up, 30, f"{reporter.edge_id}'s {published} metrics counted")
    return published


async def _birth_seq_is(h: Any, seq: int) -> bool:
    return int((await h).get("birth_seq", 0)) == seq


async def _status_is(h: Any, status: str, reason: str) -> bool:
    got = await h
    return bool(got.get("status") == status and got.get("reason") == reason)
