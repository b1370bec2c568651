"""An edge's word is a claim (issue #20 rows 3-5), against the processes as deployed: one `hgr hub` on a
Mosquitto running the shipped broker configuration (each edge may write only its own topics, which is
all these attacks need) and real Redis. The edges are MQTT clients speaking the fleet protocol
(docs/mqtt.md) under their own broker users; a Will is a real one (a client killed without
DISCONNECT).

- row 3: metrics claiming 10^15 frames of one key, with FLEET_QUOTA_FRAMES set, throttled that key on
  every edge; now the claim is clamped to what the edge can process (FLEET_EDGE_MAX_FPS).
- row 4: 30 000 births in a burst from one edge overflowed the hub's one status queue, and another
  edge's re-birth (or Will) was lost; now each edge has its own short queue, served in turns.
- row 5: metrics naming 256 new keys, 200 times, made 51 201 `hgr_fleet_key_frames` series; now one
  edge names at most FLEET_MAX_KEYS_PER_EDGE keys per quota window.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hgr.loadtest.procs import sample_sum
from research.chaos.hostile import fake_edge
from tests.fleet_helpers import USERS, Broker
from tests.hub_support import hub_processes
from tests.support import poll

PREFIX = "hgr/v1"
OPS_KEY = "ops-claims-key-0123456789"
QUOTA = 1000
EDGE_MAX_FPS = 5  # with METRICS_INTERVAL=1: a fresh edge is believed for 10 frames, then 5 a second
MAX_KEYS = 16


class Edge:
    """One edge's broker user, speaking the fleet protocol on its own topics."""

    def __init__(self, port: int, edge_id: str, session: str) -> None:
        self.edge_id, self.session, self.birth_seq, self.seq = edge_id, session, 0, 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{edge_id}-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(edge_id, USERS[edge_id])
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(10), f"{edge_id} could not connect"

    def topic(self, kind: str) -> str:
        return f"{PREFIX}/edges/{self.edge_id}/{kind}"

    def birth_doc(self) -> dict[str, Any]:
        self.birth_seq += 1
        return {"status": "online", "session": self.session, "birth_seq": self.birth_seq, "metrics_seq": self.seq,
                "version": "test", "model": "full", "capabilities": {}, "metrics_interval_s": 1, "conn": 1}

    def birth(self, qos: int = 1) -> mqtt.MQTTMessageInfo:
        return self.client.publish(self.topic("status"), json.dumps(self.birth_doc()), qos=qos, retain=qos > 0)

    def metrics(self, frames_by_key: dict[str, float]) -> mqtt.MQTTMessageInfo:
        self.seq += 1
        doc = {"session": self.session, "seq": self.seq, "frames_by_key": frames_by_key}
        return self.client.publish(self.topic("metrics"), json.dumps(doc), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Stack:
    def __init__(self, folder: Path, redis_url: str, model: str) -> None:
        self.broker = Broker(folder / "broker", auth=True).start()
        self.prefix = f"claims:{uuid.uuid4().hex[:8]}:"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "REDIS_", "EDGE_", "FLEET_"))},
                    "HGR_MODEL_PATH": model, "WORKERS": "1", "MQTT_URL": self.broker.url("hub"),
                    "MQTT_SESSION_EXPIRY": "0", "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": self.prefix,
                    "FLEET_QUOTA_FRAMES": str(QUOTA), "RATE_LIMIT_WINDOW": "3600", "METRICS_INTERVAL": "1",
                    "FLEET_EDGE_MAX_FPS": str(EDGE_MAX_FPS), "FLEET_MAX_KEYS_PER_EDGE": str(MAX_KEYS),
                    "EDGE_STALE_AFTER": "600", "API_KEYS": f"ops:{OPS_KEY}:fleet:admin"}
        self.http = httpx.Client(headers={"X-API-Key": OPS_KEY}, timeout=30)
        self.url = ""

    def edge(self, edge_id: str) -> dict[str, Any]:
        r = self.http.get(f"{self.url}/fleet/edges/{edge_id}")
        return r.json() if r.status_code == 200 else {}

    def metrics_text(self) -> str:
        return self.http.get(f"{self.url}/metrics").text


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, model_path: str) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("claims")
    s = Stack(folder, redis_url, model_path)
    try:
        with hub_processes(s.env, 1, folder) as hubs:
            s.url = hubs[0][0]
            yield s
    finally:
        s.http.close()
        s.broker.stop()
        import redis
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{s.prefix}*"))
        if keys:
            client.delete(*keys)


def _online(stack: Stack, edge: Edge) -> None:
    """Birth, then metrics until the hub holds one (its shared subscription is up then too)."""
    edge.birth().wait_for_publish(10)

    def seen() -> bool:
        if stack.edge(edge.edge_id).get("messages", {}).get("metrics", 0) > 0:
            return True
        edge.metrics({})
        return False
    poll(seen, 60, f"{edge.edge_id} online with metrics at the hub", interval=0.25)


def test_row3_inflated_frame_counts_do_not_throttle_a_tenant(stack: Stack) -> None:
    rogue, real = Edge(stack.broker.port, "edge-a", "a1"), Edge(stack.broker.port, "edge-b", "b1")
    commands: list[dict[str, Any]] = []
    observer = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    observer.username_pw_set("observer", USERS["observer"])
    subscribed = threading.Event()
    observer.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}/edges/+/control", qos=1)
    observer.on_subscribe = lambda *_: subscribed.set()
    observer.on_message = lambda c, u, msg: commands.append({"edge": msg.topic.split("/")[-2],
                                                             **json.loads(msg.payload)})
    observer.connect("127.0.0.1", stack.broker.port)
    observer.loop_start()
    try:
        assert subscribed.wait(10)
        _online(stack, rogue)
        _online(stack, real)
        before = sample_sum(stack.metrics_text(), "hgr_fleet_claims_limited_total", what="frames")
        stored = stack.edge("edge-a")["messages"]["metrics"]
        rogue.metrics({"tenantB": 1e15}).wait_for_publish(10)
        poll(lambda: stack.edge("edge-a")["messages"]["metrics"] > stored, 30, "the claim stored")
        # A later flush from another edge: its series shows once the claim's flush (and any command it
        # sent) is done; then a command of our own, published after anything the hub sent before.
        real.metrics({"tenantC": 1}).wait_for_publish(10)
        poll(lambda: 'hgr_fleet_key_frames{key="tenantC"}' in stack.metrics_text(), 30, "the later flush")
        r = stack.http.post(f"{stack.url}/fleet/edges/edge-b/streams/sentinel/throttle", json={"max_fps": None})
        assert r.status_code == 202, r.text
        poll(lambda: any(c.get("stream") == "sentinel" for c in commands), 30, "the sentinel command")
        assert [c for c in commands if c.get("key") == "tenantB"] == [], "one edge's claim throttled tenant B"
        text = stack.metrics_text()
        assert 0 < sample_sum(text, "hgr_fleet_key_frames", key="tenantB") <= 2 * EDGE_MAX_FPS + 60 * EDGE_MAX_FPS
        assert sample_sum(text, "hgr_fleet_claims_limited_total", what="frames") >= before + 1
    finally:
        observer.loop_stop()
        observer.disconnect()
        rogue.close()
        real.close()


def test_row4_a_birth_flood_loses_no_other_edges_rebirth_or_will(stack: Stack) -> None:
    flooder, real = Edge(stack.broker.port, "edge-a", "a2"), Edge(stack.broker.port, "edge-b", "b2")
    willing = Edge(stack.broker.port, "edge-c", "c1")
    _online(stack, real)
    _online(stack, willing)
    willing.close()  # a clean disconnect sends no Will: the Will comes from the process below
    offline = {"status": "offline", "session": "c1", "reason": "will", "conn": 1}
    # A real Will: a client that subscribed (stdbuf: its debug lines come as they happen), killed below.
    holder = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-d", "-h", "127.0.0.1", "-p", str(stack.broker.port),
                               "-u", "edge-c", "-P", USERS["edge-c"], "-V", "mqttv5",
                               "-t", f"{PREFIX}/edges/edge-c/control",
                               "--will-topic", f"{PREFIX}/edges/edge-c/status", "--will-payload",
                               json.dumps(offline), "--will-qos", "1", "--will-retain"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert holder.stdout is not None
        subscribed = threading.Event()

        def watch() -> None:  # the pipe ends when the process does
            if any("SUBACK" in line for line in holder.stdout or ()):
                subscribed.set()
        threading.Thread(target=watch, daemon=True).start()
        assert subscribed.wait(30), "the Will holder never subscribed"
        real.session = "b3"  # the real edge restarts: a re-birth with a new session
        sent = [flooder.birth(qos=0) for _ in range(30_000)]
        sent[-1].wait_for_publish(60)  # the whole flood is on its way to the broker, ahead of what follows
        rebirth = real.birth()
        holder.send_signal(signal.SIGKILL)  # the Will, published by the broker, amid the flood
        holder.wait(10)
        rebirth.wait_for_publish(10)
        assert all(m.rc == mqtt.MQTT_ERR_SUCCESS for m in sent)
        poll(lambda: stack.edge("edge-b").get("session") == "b3" and stack.edge("edge-b")["status"] == "online",
             60, "edge-b's re-birth at the hub")
        poll(lambda: stack.edge("edge-c").get("status") == "offline", 60, "edge-c's Will at the hub")
        assert stack.edge("edge-a")["status"] == "online"  # the flooder's births coalesced, its last applied
        assert sample_sum(stack.metrics_text(), "hgr_fleet_claims_limited_total", what="status") > 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        flooder.close()
        real.close()


def test_row5_key_names_per_edge_are_bounded(stack: Stack) -> None:
    rogue = Edge(stack.broker.port, "edge-c", "c2")
    _online(stack, rogue)
    stored = stack.edge("edge-c")["messages"]["metrics"]
    run = uuid.uuid4().hex[:6]
    started = time.monotonic()
    for i in range(200):
        rogue.metrics({f"k{run}-{i}-{j}": 1 for j in range(256)})
    rogue.metrics({}).wait_for_publish(30)
    poll(lambda: stack.edge("edge-c")["messages"]["metrics"] >= stored + 201, 120, "the 201 messages stored")
    # One more flush after those (another edge's): the series they made, if any, are set by then.
    other = Edge(stack.broker.port, "edge-b", "b4")
    try:
        _online(stack, other)
        other.metrics({f"sync-{run}": 1}).wait_for_publish(10)
        poll(lambda: f'hgr_fleet_key_frames{{key="sync-{run}"}}' in stack.metrics_text(), 30, "the later flush")
    finally:
        other.close()
        rogue.close()
    text = stack.metrics_text()
    series = [line for line in text.splitlines() if line.startswith(f'hgr_fleet_key_frames{{key="k{run}-')]
    assert len(series) <= MAX_KEYS, f"{len(series)} series from one edge in {time.monotonic() - started:.1f} s"
    assert sample_sum(text, "hgr_fleet_claims_limited_total", what="key_names") >= 200 * 256 - MAX_KEYS
    assert len(text) < 200_000


def test_row6_the_fleet_tracks_at_most_fleet_max_edges(tmp_path: Path, redis_url: str, model_path: str,
                                                      mqtt_url: str) -> None:
    """Row 6, on a broker without ACL (the dev setup: anyone may publish as any edge): 2 000 made-up edge
    ids. The hub tracks FLEET_MAX_EDGES of them, drops (and counts) the rest, and its known edge goes on."""
    cap, fakes, tag = 50, 2000, uuid.uuid4().hex[:8]
    prefix, key_prefix = f"test/{tag}", f"claims6:{tag}:"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "REDIS_", "EDGE_", "FLEET_"))},
           "HGR_MODEL_PATH": model_path, "WORKERS": "1", "MQTT_URL": mqtt_url, "MQTT_TOPIC_PREFIX": prefix,
           "MQTT_SHARE_GROUP": f"g{tag}", "MQTT_SESSION_EXPIRY": "0", "REDIS_URL": redis_url,
           "REDIS_KEY_PREFIX": key_prefix, "FLEET_MAX_EDGES": str(cap), "EDGE_STALE_AFTER": "600",
           "FLEET_GAUGES_INTERVAL": "0.5", "API_KEYS": f"ops:{OPS_KEY}:fleet:admin"}
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{tag}", protocol=mqtt.MQTTv5)
    connected = threading.Event()
    publisher.on_connect = lambda *_: connected.set()
    publisher.connect(host, int(port))
    publisher.loop_start()
    http = httpx.Client(headers={"X-API-Key": OPS_KEY}, timeout=30)
    try:
        assert connected.wait(10)
        with hub_processes(env, 1, tmp_path) as hubs:
            url = hubs[0][0]

            def publish(edge_id: str, kind: str, doc: dict[str, Any]) -> mqtt.MQTTMessageInfo:
                return publisher.publish(f"{prefix}/edges/{edge_id}/{kind}", json.dumps(doc), qos=1)

            def known_metrics() -> int:
                r = http.get(f"{url}/fleet/edges/known")
                return int(r.json()["messages"]["metrics"]) if r.status_code == 200 else 0

            seq = 0

            def known_reports() -> int:
                nonlocal seq
                seq += 1
                publish("known", "metrics", {"session": "k", "seq": seq})
                return known_metrics()

            publish("known", "status", {"status": "online", "session": "k", "birth_seq": 1}).wait_for_publish(10)
            poll(known_reports, 60, "the known edge at the hub", interval=0.25)
            for i in range(fakes):  # through paho: at its pace the hub keeps up with the broker's default queue
                fake_edge(publisher, prefix, f"fake-{i}")
            publish(f"fake-{fakes - 1}", "metrics", {"session": "f", "seq": 2}).wait_for_publish(60)
            poll(lambda: sample_sum(http.get(f"{url}/metrics").text, "hgr_fleet_claims_limited_total", what="edges")
                 >= 2 * (fakes - cap), 120, "the made-up edges past the cap refused")
            before = known_metrics()
            poll(lambda: known_reports() > before, 60, "the known edge still reported")
            fleet = http.get(f"{url}/fleet")
            assert fleet.json()["totals"]["edges"] <= cap and len(fleet.content) < 200_000
            assert "known" in {e["edge_id"] for e in fleet.json()["edges"]}
    finally:
        http.close()
        publisher.loop_stop()
        publisher.disconnect()
        import redis
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{key_prefix}*"))
        if keys:
            client.delete(*keys)
