"""MqttBus against real Mosquitto: content type, retained, shared subscriptions, the outbox across a
broker restart, and the shipped ACL (an edge can only publish under its own id)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from hgr.common.config import Settings, load_settings
from hgr.common.messaging.bus import INBOX_HIGH, MqttBus
from tests.fleet_helpers import Broker
from tests.support import eventually

pytestmark = pytest.mark.service  # starts processes (servers, tools) or needs a broker


def _settings(url: str, **env: str) -> Settings:
    return load_settings({"MQTT_URL": url, "MQTT_KEEPALIVE": "5", **env}, env_file=None)


async def test_publish_subscribe_with_content_type_and_retained(mqtt_url: str) -> None:
    prefix = f"test/{uuid.uuid4().hex[:8]}"
    pub = MqttBus(_settings(mqtt_url), service="edge", client_id=f"{prefix}-pub".replace("/", "-"))
    sub = MqttBus(_settings(mqtt_url), service="edge", client_id=f"{prefix}-sub".replace("/", "-"))
    got: list[tuple[str, bytes, dict[str, Any]]] = []
    await pub.start()
    assert await pub.wait_connected(10)
    pub.publish(f"{prefix}/edges/a/status", b'{"status":"online"}', qos=1, retain=True)
    assert await pub.flush(10)
    sub.subscribe(f"{prefix}/edges/+/status", lambda t, p, props: got.append((t, p, props)))
    await sub.start()
    await eventually(lambda: got, 10, "the retained status")
    topic, payload, props = got[0]
    assert topic == f"{prefix}/edges/a/status" and payload == b'{"status":"online"}'
    assert props["content_type"] == "application/json" and props["retain"]
    pub.publish(f"{prefix}/edges/a/status", b"", qos=1, retain=True)  # clear the retained message
    await pub.flush(10)
    await pub.stop()
    await sub.stop()
    assert not pub.connected


async def test_shared_subscription_gives_each_message_to_one_hub(mqtt_url: str) -> None:
    prefix = f"test/{uuid.uuid4().hex[:8]}"
    group = f"g{uuid.uuid4().hex[:6]}"
    hubs = [MqttBus(_settings(mqtt_url, MQTT_SHARE_GROUP=group, MQTT_SESSION_EXPIRY="0"), service="hub",
                    client_id=f"hub-{i}-{group}") for i in range(2)]
    received: list[list[bytes]] = [[], []]
    for i, hub in enumerate(hubs):
        def receive(t: str, p: bytes, props: dict[str, Any], i: int = i) -> None:
            received[i].append(p)

        hub.subscribe(f"{prefix}/edges/+/metrics", receive, shared=True)
        await hub.start()
    for hub in hubs:
        assert await hub.wait_subscribed(10)
    pub = MqttBus(_settings(mqtt_url), client_id=f"pub-{group}")
    await pub.start()
    assert await pub.wait_connected(10)
    sent = [str(i).encode() for i in range(200)]
    for payload in sent:
        pub.publish(f"{prefix}/edges/e{int(payload) % 3}/metrics", payload, qos=1)
    await eventually(lambda: len(received[0]) + len(received[1]) >= 200, 20, "200 messages")
    assert sorted(received[0] + received[1], key=int) == sent  # each exactly once
    assert received[0] and received[1]  # and both hubs got a share
    for bus in (pub, *hubs):
        await bus.stop()


async def test_outbox_is_delivered_in_order_after_a_broker_restart(tmp_path: Path) -> None:
    broker = Broker(tmp_path, auth=False).start()
    try:
        url = broker.url()
        hub = MqttBus(_settings(url, MQTT_SESSION_EXPIRY="60"), service="hub", client_id="hub-restart")
        events: list[bytes] = []
        hub.subscribe("p/edges/+/events", lambda t, p, props: events.append(p), shared=True)
        await hub.start()
        edge = MqttBus(_settings(url, MQTT_OUTBOX_SIZE="30"), service="edge", client_id="edge-restart")
        await edge.start()
        assert await hub.wait_subscribed(10) and await edge.wait_connected(10)
        edge.publish("p/edges/e/events", b"0", qos=1)
        await eventually(lambda: events == [b"0"], 10, "the first event")

        broker.stop()  # SIGTERM: persistence saved, the hub's session with it
        await eventually(lambda: not edge.connected and not hub.connected, 20, "both to notice")
        for i in range(1, 21):
            edge.publish("p/edges/e/events", str(i).encode(), qos=1)
            edge.publish("p/edges/e/metrics", b"m", qos=1)  # 40 messages into 30 slots: metrics go first
            edge.publish("p/edges/e/results", b"r", qos=0)  # QoS 0 results are never outboxed
        assert len(edge.outbox) == 30 and edge.outbox.dropped == {"metrics": 10, "results": 20}

        broker.start()  # same port
        await eventually(lambda: len(events) >= 21, 60, "the outbox after the restart")
        assert events == [str(i).encode() for i in range(21)]  # nothing lost, in order
        await edge.stop()
        await hub.stop()
    finally:
        broker.stop()


async def test_buffered_client_reads_bursts_exactly_once_in_order_and_acknowledges_them(tmp_path: Path) -> None:
    """The hub's paho client reads 64 KiB at a time, parses PUBLISH itself and sends a burst's PUBACKs
    together: every message arrives once, in order, with its own content type (messages bigger than
    a read included), and the broker got every ack (nothing comes again after a reconnect)."""
    broker = Broker(tmp_path, auth=False).start()
    try:
        url = broker.url()
        got: list[tuple[bytes, str | None]] = []

        def on_message(topic: str, payload: bytes, props: dict[str, Any]) -> None:
            got.append((payload, props["content_type"]))

        def make_hub() -> MqttBus:
            hub = MqttBus(_settings(url, MQTT_SESSION_EXPIRY="60"), service="hub", client_id="hub-burst")
            hub.subscribe("b/edges/+/metrics", on_message)
            return hub

        hub = make_hub()
        assert type(hub.client).__name__ == "BufferedClient"  # the fast path is what is tested here
        await hub.start()
        edge = MqttBus(_settings(url), service="edge", client_id="edge-burst")
        await edge.start()
        assert await hub.wait_subscribed(10) and await edge.wait_connected(10)
        content_types = ["application/json", "application/vnd.msgpack", None]
        sent: list[tuple[bytes, str | None]] = []
        for i in range(3000):
            size = 100_000 if i % 700 == 5 else 40  # a few span several socket reads
            payload = f"{i:06d}".encode() + b"x" * size
            sent.append((payload, content_types[i % 3]))
            edge.publish("b/edges/e/metrics", payload, qos=1, content_type=content_types[i % 3])
        await eventually(lambda: len(got) >= len(sent), 60, "3000 messages")
        assert got == sent  # once each, in order, each with its content type

        await hub.stop()  # clean DISCONNECT: the session stays and keeps whatever was not acknowledged
        got.clear()
        hub = make_hub()
        await hub.start()
        assert await hub.wait_connected(10)
        edge.publish("b/edges/e/metrics", b"after", qos=1)
        await eventually(lambda: (b"after", "application/json") in got, 20, "the message after the reconnect")
        assert got == [(b"after", "application/json")]  # nothing of the 3000 came again: all were acked
        await edge.stop()
        await hub.stop()
    finally:
        broker.stop()


async def test_shipped_acl_keeps_an_edge_to_its_own_topics(tmp_path: Path) -> None:
    broker = Broker(tmp_path, auth=True).start()
    try:
        seen: list[str] = []
        observer = MqttBus(_settings(broker.url("observer")), client_id="observer")
        observer.subscribe("hgr/v1/#", lambda t, p, props: seen.append(t))
        await observer.start()
        edge = MqttBus(_settings(broker.url("edge-a")), client_id="edge-a")
        await edge.start()
        assert await observer.wait_subscribed(10) and await edge.wait_connected(10)
        edge.publish("hgr/v1/edges/edge-b/metrics", b"{}", qos=1)  # someone else's id: refused
        edge.publish("hgr/v1/edges/edge-a/metrics", b"{}", qos=1)
        await eventually(lambda: "hgr/v1/edges/edge-a/metrics" in seen, 10, "the edge's own message")
        # The broker keeps one client's messages in order: had edge-b's (sent first) been let through,
        # the observer would have it already.
        assert seen == ["hgr/v1/edges/edge-a/metrics"]
        intruder = MqttBus(_settings(broker.url("edge-a").replace("a-secret", "wrong")), client_id="intruder")
        await intruder.start()
        await eventually(lambda: intruder.refused, 10, "the broker's refusal")
        assert not intruder.connected  # bad password: refused
        for bus in (intruder, edge, observer):
            await bus.stop()
    finally:
        broker.stop()


async def test_the_loop_drains_the_inbox_in_slices() -> None:
    """A burst is handled a few milliseconds at a time: other callbacks on the loop (REST, flushes, pings)
    run between the slices, and every message is still handled once, in order."""
    bus = MqttBus(_settings("mqtt://127.0.0.1:1"), service="hub", client_id="slices")  # never started
    handled: list[bytes] = []

    def slow_handler(topic: str, payload: bytes, props: dict[str, Any]) -> None:
        time.sleep(0.001)  # 1 ms a message: a slice (DRAIN_SLICE_S, 5 ms) ends after a few
        handled.append(payload)

    bus.subscribe("s/edges/+/metrics", slow_handler)
    loop = asyncio.get_running_loop()
    bus._loop = loop
    sent = [f"{i}".encode() for i in range(50)]
    bus._inbox.extend(("s/edges/e/metrics", p, {"content_type": None}) for p in sent)
    seen_by_others: list[int] = []
    loop.call_soon(bus._drain)
    loop.call_soon(lambda: seen_by_others.append(len(handled)))  # queued behind the first slice only
    await eventually(lambda: len(handled) == len(sent), 30, "the whole burst")
    assert 0 < seen_by_others[0] < len(sent), seen_by_others
    assert handled == sent


async def test_a_backlog_is_read_no_faster_than_the_loop_handles_it(tmp_path: Path) -> None:
    """A hub back to a backlog bigger than its inbox: paho's thread stops reading at INBOX_HIGH messages
    waiting for the loop (the broker holds the rest) and goes on once the loop has drained them; every
    message arrives once, in order."""
    broker = Broker(tmp_path, auth=False).start()
    try:
        url = broker.url()
        got: list[bytes] = []
        waiting: list[int] = []

        def make_hub() -> MqttBus:
            hub = MqttBus(_settings(url, MQTT_SESSION_EXPIRY="60"), service="hub", client_id="hub-backlog")

            def slow_handler(topic: str, payload: bytes, props: dict[str, Any]) -> None:
                time.sleep(0.0002)  # the loop handles ≤ 5 000 a second: the reader is faster
                waiting.append(len(hub._inbox))
                got.append(payload)
            hub.subscribe("k/edges/+/metrics", slow_handler)
            return hub

        hub = make_hub()
        await hub.start()
        assert await hub.wait_subscribed(10)
        await hub.stop()  # a kept session: the broker queues for it
        edge = MqttBus(_settings(url), service="edge", client_id="edge-backlog")
        await edge.start()
        assert await edge.wait_connected(10)
        sent = [f"{i:05d}".encode() for i in range(3 * INBOX_HIGH)]
        for payload in sent:
            edge.publish("k/edges/e/metrics", payload, qos=1)
        assert await edge.flush(60)
        hub = make_hub()
        await hub.start()
        await eventually(lambda: len(got) >= len(sent), 120, "the backlog")
        assert got == sent
        assert max(waiting) <= INBOX_HIGH  # never more waiting than the bound…
        assert max(waiting) >= INBOX_HIGH - 100  # …which the reader did reach, and waited at
        await edge.stop()
        await hub.stop()
    finally:
        broker.stop()
