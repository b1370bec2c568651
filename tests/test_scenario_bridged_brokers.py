"""More than one broker: two edge sites, each with its own Mosquitto bridged to a central one (the
shipped deploy/mosquitto configs), two hubs on the central broker (shipped config, auth and ACL), one
edge reporter per site. End to end and counted:

- retained births cross the bridges: hubs started after the edges see them online by their birth;
- control messages reach the right edge only (a stream throttle to edge-a, a rebirth to edge-b);
- a WAN outage of site A's bridge link (both brokers up): the site broker queues, then replays;
- site B's broker restarted: the edge's own outbox holds its messages, then replays;
- a crashed edge (its connection dropped without DISCONNECT): its Last Will reaches the hubs;
- every metrics message published is counted exactly once by the hubs (no gap, none twice);
- the central broker restarted while the edges publish: the hubs and the bridges reconnect, births are
  retained again; with the shipped bridge timing (the hubs subscribe again before the bridges replay)
  every metrics message is counted exactly once; after a long outage with fast bridge retries, what a
  bridge replays before the hubs' shared subscriptions are back is lost, and counted as gaps.
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
from paho.mqtt.enums import CallbackAPIVersion

from hgr.common.config import load_settings
from hgr.common.messaging.bus import MqttBus
from hgr.edge.reporter import EdgeReporter
from hgr.hub.fleet import FleetService
from tests.fleet_helpers import USERS, Broker, EdgeSiteBroker, LinkCut, StandInNode
from tests.support import eventually, poll

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
def sites(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """The central broker; site A bridged to it through a link that can be cut, site B directly. The
    bridges' ``restart_timeout`` is "1 2" (short, to keep tests short) unless the test passes another
    as the fixture's param (indirect parametrize; None: the shipped default)."""
    restart_timeout = getattr(request, "param", "1 2")
    central = Broker(tmp_path / "central", share_groups=("hgr-hubs", "late-hubs")).start()
    link = LinkCut(central.port)
    site_a = EdgeSiteBroker(tmp_path / "site-a", "edge-a", f"127.0.0.1:{link.port}", restart_timeout=restart_timeout)
    site_b = EdgeSiteBroker(tmp_path / "site-b", "edge-b", f"127.0.0.1:{central.port}", restart_timeout=restart_timeout)
    yield central, {"edge-a": site_a, "edge-b": site_b}, link
    for broker in (site_a, site_b, central):
        broker.stop()


async def test_two_bridged_sites_end_to_end_with_counts(
        sites: Any, private_redis: tuple[str, subprocess.Popen[bytes]]) -> None:
    central, site, link = sites
    tag = uuid.uuid4().hex[:8]
    redis_client, hubs, nodes, reporters = await _bring_up(sites, private_redis[0], tag)
    store = hubs[0].store

    # Retained births cross the bridges: a new subscriber on the central broker gets them, and a hub
    # started late (with a store of its own) knows both edges online by their birth, not by metrics.
    async def both_retained() -> bool:
        return await asyncio.to_thread(_retained_births, central.port) == {"edge-a", "edge-b"}
    await eventually(both_retained, 30, "both births retained on the central broker")
    late = await _start_hub(central, redis_client, tag, "late-hub", "late:")
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


BASE_ENV = {"MQTT_TOPIC_PREFIX": PREFIX, "METRICS_INTERVAL": "0.2", "EVENT_DEBOUNCE_MS": "0",
            "MQTT_KEEPALIVE": "5", "MQTT_OUTBOX_SETTLE": "0.5", "EDGE_STALE_AFTER": "60"}


async def _bring_up(sites: Any, redis_url: str, tag: str) -> tuple[aioredis.Redis, list[FleetService],
                                                                    dict[str, StandInNode], dict[str, EdgeReporter]]:
    """The link and both site brokers up, two hubs on the central broker, then one edge per site. The hubs
    first: a metrics message published while no hub subscribes is dropped by the broker (and shows as a
    gap), so counts start from the edges' first message."""
    central, site, link = sites
    await link.restore()
    site["edge-a"].start()
    site["edge-b"].start()
    redis_client = aioredis.Redis.from_url(redis_url)
    hubs = [await _start_hub(central, redis_client, tag, f"hub-{i}", "hgr:") for i in range(2)]
    nodes, reporters = await _start_edges(site, tag)
    return redis_client, hubs, nodes, reporters


async def _start_hub(central: Broker, redis_client: aioredis.Redis, tag: str, name: str,
                     key_prefix: str) -> FleetService:
    """A hub on the central broker (its default session expiry: a kept session), one share group per
    store (the groups the broker's rights name: ``sites``)."""
    settings = load_settings({**BASE_ENV, "MQTT_URL": central.url("hub"), "REDIS_KEY_PREFIX": key_prefix,
                              "MQTT_SHARE_GROUP": f"{key_prefix.rstrip(':')}-hubs"}, env_file=None)
    bus = MqttBus(settings, service="hub", client_id=f"{name}-{tag}")
    hub = FleetService(settings, bus, redis_client)
    await hub.start()
    assert await bus.wait_connected(10)
    return hub


async def _start_edges(site: dict[str, EdgeSiteBroker],
                       tag: str) -> tuple[dict[str, StandInNode], dict[str, EdgeReporter]]:
    """One edge reporter per site, on its site broker."""
    nodes: dict[str, StandInNode] = {}
    reporters: dict[str, EdgeReporter] = {}
    for edge_id in ("edge-a", "edge-b"):
        settings = load_settings({**BASE_ENV, "EDGE_ID": edge_id, "MQTT_URL": site[edge_id].url()}, env_file=None)
        nodes[edge_id] = StandInNode()
        nodes[edge_id].streams = {"cam-1"}  # both edges have a stream of that name: a misrouted command would land
        reporters[edge_id] = EdgeReporter(settings, MqttBus(settings, client_id=f"{edge_id}-{tag}"), nodes[edge_id])
        await reporters[edge_id].start()
    return nodes, reporters


async def _all_counted(reporter: EdgeReporter, edge: Any, *, gaps_too: bool = False) -> int:
    """Pause the edge's metrics (its reporter's loop), then wait until the hubs have counted every one
    it published (``gaps_too``: counted or reported missing)."""
    assert reporter._task is not None
    reporter._task.cancel()
    await asyncio.gather(reporter._task, return_exceptions=True)
    published = reporter.metrics_seq

    async def caught_up() -> bool:
        h = await edge(reporter.edge_id)
        return int(h.get("msgs", 0)) + (int(h.get("gaps", 0)) if gaps_too else 0) >= published
    try:
        await eventually(caught_up, 30, f"{reporter.edge_id}'s {published} metrics counted")
    except AssertionError:
        raise AssertionError(f"{reporter.edge_id}: {published} metrics published, at the hubs: "
                             f"{await edge(reporter.edge_id)}") from None
    return published


async def _birth_seq_is(h: Any, seq: int) -> bool:
    return int((await h).get("birth_seq", 0)) == seq


async def _status_is(h: Any, status: str, reason: str) -> bool:
    got = await h
    return bool(got.get("status") == status and got.get("reason") == reason)


@pytest.mark.parametrize(("sites", "outage", "exact"), [
    (None, 3, True),  # a restart (~1 s down), the bridges' shipped restart_timeout: the hubs are back first
    ("1 2", 40, False),  # ~8 s down, bridges retrying every 1-2 s: a bridge may replay before the hubs subscribe
], ids=["restart-shipped-bridge", "long-outage-fast-bridge"], indirect=["sites"])
async def test_central_broker_restart(sites: Any, private_redis: tuple[str, subprocess.Popen[bytes]],
                                      outage: int, exact: bool) -> None:
    """The central broker stopped (SIGTERM: its persistence saved) and started again on the same port
    while both edges keep publishing through their site bridges: the hubs reconnect and subscribe
    again, the bridges reconnect and replay what their site broker queued, the births are retained
    again. With the shipped bridge timing every metrics message is counted exactly once (no gap).
    Mosquitto 2.0 does not restore the hubs' shared subscriptions, so what a bridge replays before
    they are back reaches no hub: with bridges retrying fast after a long outage that happens, and
    every message is then either counted once or reported as a gap, never silently lost."""
    central, _, link = sites
    redis_client, hubs, _, reporters = await _bring_up(sites, private_redis[0], uuid.uuid4().hex[:8])
    store = hubs[0].store
    loop = asyncio.get_running_loop()

    async def edge(edge_id: str) -> dict[str, str]:
        return await store.edge(edge_id) or {}

    async def counted(edge_id: str, at_least: int) -> bool:
        return int((await edge(edge_id)).get("msgs", 0)) >= at_least

    try:
        for edge_id in ("edge-a", "edge-b"):
            await eventually(lambda e=edge_id: counted(e, 3), 30, f"metrics of {edge_id} through its bridge")

        # Down: the bridges lose their link; the site brokers queue what the edges publish meanwhile.
        down_at = {e: r.metrics_seq for e, r in reporters.items()}
        t_down = loop.time()
        await asyncio.to_thread(central.stop)  # SIGTERM: retained births and kept sessions saved
        await eventually(lambda: all(r.metrics_seq >= down_at[e] + outage for e, r in reporters.items()), 60,
                         "both edges publishing while the central broker is down")
        # Up again, same port and data folder; the edges publish on all along.
        await asyncio.to_thread(central.start)
        up_at = {e: r.metrics_seq for e, r in reporters.items()}
        t_up = loop.time()

        # The hubs reconnect (a new connection each) and subscribe again.
        for hub in hubs:
            bus = hub.bus
            assert isinstance(bus, MqttBus)
            await eventually(lambda b=bus: b.connects >= 2, 30, f"{bus.client_id} reconnected")
            assert await bus.wait_subscribed(30), f"{bus.client_id} not subscribed again"
        t_hubs = loop.time()
        # The bridges reconnect: messages published after the restart arrive (queued ones before them).
        # Past the hubs' gap grace (5 s), so a hole left by a replay nobody received is resolved.
        for edge_id in ("edge-a", "edge-b"):
            await eventually(lambda e=edge_id: counted(e, up_at[e] + 3), 60, f"{edge_id}'s bridge back")
        t_bridges = loop.time()
        if not exact:
            back_at = {e: r.metrics_seq for e, r in reporters.items()}
            await eventually(lambda: all(r.metrics_seq >= back_at[e] + 30 for e, r in reporters.items()), 60,
                             "6 s more of metrics")
        # The births are visible again: retained on the central broker (its persistence; a bridge also
        # sends its site's retained birth again when it connects).
        async def both_retained() -> bool:
            return await asyncio.to_thread(_retained_births, central.port) == {"edge-a", "edge-b"}
        await eventually(both_retained, 30, "both births retained on the central broker after its restart")

        # Every metrics message, published before, during and after the restart: counted exactly once
        # (exact), or else counted once or reported missing.
        published = {e: await _all_counted(r, edge, gaps_too=not exact) for e, r in reporters.items()}
        for edge_id, sent in published.items():
            h = await edge(edge_id)
            msgs, gaps = int(h["msgs"]), int(h.get("gaps", 0))
            assert h["status"] == "online", h
            assert sent >= up_at[edge_id] + 3 and up_at[edge_id] >= down_at[edge_id] + outage
            if exact:
                assert msgs == sent and gaps == 0, (edge_id, sent, h)
            else:
                assert msgs + gaps == sent, (edge_id, sent, h)
            print(f"{edge_id}: {sent} metrics published ({down_at[edge_id]} before the stop, "
                  f"{up_at[edge_id] - down_at[edge_id]} while down), {msgs} counted, {gaps} gaps, "
                  f"{h.get('dups', 0)} duplicates dropped")
        print(f"central down {t_up - t_down:.1f} s; hubs subscribed {t_hubs - t_up:.1f} s after its start, "
              f"both bridges delivering {t_bridges - t_up:.1f} s after it")
    finally:
        await link.cut()
        for reporter in reporters.values():
            await reporter.stop()
        for hub in hubs:
            await hub.stop()
        await redis_client.aclose()
