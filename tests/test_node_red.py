"""The Node-RED flow of docs/node-red-flow.json (docs/integrations.md, "Node-RED"), run by a real Node-RED from
the npm registry (installed by .ci/run into NODE_RED_DIR) against a real Mosquitto: the flow loads with core
nodes only, a gesture state message becomes an action message on ``home/actions``, a state replayed at
subscription or repeated is no action, and the state reaches the debug node (Node-RED's log); then the same with
the state published by a real ``hgr edge`` reading a file camera of two fixture photos."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hgr.loadtest.clips import SAMPLE_PHOTOS
from tests.camera_support import make_clip
from tests.support import free_port, need, stop_process

FLOW = Path(__file__).parent.parent / "docs" / "node-red-flow.json"
PHOTOS = SAMPLE_PHOTOS
NODE_RED_DIR = Path("/var/cache/hgr-node-red")  # .ci/run: npm install --prefix NODE_RED_DIR node-red@<pinned>
NODE_RED = NODE_RED_DIR / "node_modules" / ".bin" / "node-red"
ACTIONS = "home/actions"
STATE = "hgr/v1/edges/e1/cameras"

SETTINGS = """module.exports = {{
    uiHost: "127.0.0.1",
    uiPort: {port},
    flowFile: "flows.json",
    credentialSecret: false,
    editorTheme: {{ projects: {{ enabled: false }}, tours: false }},
    telemetry: {{ enabled: false, updateNotification: false }},
    diagnostics: {{ enabled: false, ui: false }},
    externalModules: {{ autoInstall: false, palette: {{ allowInstall: false }} }},
    functionExternalModules: false,
    logging: {{ console: {{ level: "info", metrics: false, audit: false }} }},
}};
"""


def flow_for(mqtt_port: int) -> list[dict[str, Any]]:
    """The docs' flow with its broker node pointed at ``mqtt_port`` (host and port are all that changes)."""
    flow: list[dict[str, Any]] = json.loads(FLOW.read_text())
    brokers = [n for n in flow if n["type"] == "mqtt-broker"]
    assert [(b["broker"], b["port"]) for b in brokers] == [("127.0.0.1", "1883")], "documented broker"
    brokers[0]["port"] = str(mqtt_port)
    return flow


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as resp:
        return json.loads(resp.read())


@contextmanager
def node_red(tmp_path: Path, mqtt_port: int) -> Iterator[tuple[str, Path]]:
    """Node-RED on 127.0.0.1 and a free port with the docs' flow: (admin URL, its log file); stopped after."""
    user_dir = tmp_path / "node-red"
    user_dir.mkdir()
    port = free_port()
    (user_dir / "settings.js").write_text(SETTINGS.format(port=port))
    (user_dir / "flows.json").write_text(json.dumps(flow_for(mqtt_port)))
    log = tmp_path / "node-red.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(NODE_RED), "--userDir", str(user_dir), "--settings",
                                 str(user_dir / "settings.js"), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 90
        while True:  # the admin API answers once the runtime has loaded the flows
            assert proc.poll() is None, f"node-red exited with {proc.returncode}: {log.read_text()[-3000:]}"
            assert time.monotonic() < end, f"node-red did not answer within 90 s: {log.read_text()[-3000:]}"
            try:
                get_json(url + "/flows")
                break
            except OSError:
                time.sleep(0.2)
        yield url, log
    finally:
        stop_process(proc, timeout=20)


@contextmanager
def subscriber(mqtt_port: int, topic: str) -> Iterator[queue.Queue[tuple[str, bytes]]]:
    """A client subscribed to ``topic`` (acknowledged) until the end: its messages in a queue."""
    got: queue.Queue[tuple[str, bytes]] = queue.Queue()
    subscribed = queue.Queue[bool]()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, msg: got.put((msg.topic, bytes(msg.payload)))
    client.on_subscribe = lambda *args: subscribed.put(True)
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        subscribed.get(timeout=10)
        yield got
    finally:
        client.loop_stop()
        client.disconnect()


@contextmanager
def publisher(mqtt_port: int) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    try:
        yield client
    finally:
        client.loop_stop()
        client.disconnect()


def publish(client: mqtt.Client, topic: str, payload: str, retain: bool = True) -> None:
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)


def next_action(actions: queue.Queue[tuple[str, bytes]], timeout: float = 20) -> dict[str, Any]:
    topic, payload = actions.get(timeout=timeout)
    assert topic == ACTIONS
    action: dict[str, Any] = json.loads(payload)
    return action


def subscribed(pub: mqtt.Client, actions: queue.Queue[tuple[str, bytes]]) -> dict[str, Any]:
    """Wait until the flow is subscribed: a (not retained) gesture of camera ``probe`` of edge ``e1`` comes back
    as an action. Returns the first action received (the probe's, unless the flow acted on something else)."""
    for _ in range(100):
        publish(pub, f"{STATE}/probe/gesture", "open_palm", retain=False)
        try:
            return next_action(actions, timeout=0.5)
        except queue.Empty:
            continue
    raise AssertionError("the flow never turned a gesture into an action (not subscribed after 100 tries)")


def wait_for_log(log: Path, text: str, deadline_s: float = 20) -> None:
    end = time.monotonic() + deadline_s
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < end, f"{text!r} not in Node-RED's log: {log.read_text()[-3000:]}"
        time.sleep(0.1)


def test_the_docs_flow_turns_gestures_into_actions(
        private_mosquitto: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    need(NODE_RED.exists(), f"Node-RED is not installed in {NODE_RED_DIR} (.ci/run installs it)")
    port = int(private_mosquitto[0].rsplit(":", 1)[1])
    doc_flow = json.loads(FLOW.read_text())
    with subscriber(port, ACTIONS) as actions, publisher(port) as pub:
        # a state from before Node-RED started: the broker replays it at subscription, no action
        publish(pub, f"{STATE}/porch/gesture", "fist")
        with node_red(tmp_path, port) as (url, log):
            # the flow loaded as it is in the docs, and it uses Node-RED's core nodes only
            loaded = get_json(url + "/flows")
            assert {n["id"] for n in loaded} == {n["id"] for n in doc_flow}
            node_sets = get_json(url + "/nodes", {"Accept": "application/json"})
            core = {t for s in node_sets if s["module"] == "node-red" and s.get("enabled", True) for t in s["types"]}
            assert {n["type"] for n in doc_flow} - {"tab"} <= core

            assert subscribed(pub, actions) == {"edge": "e1", "camera": "probe", "gesture": "open_palm",
                                                "action": "lights_on"}, "the replayed porch state made no action"

            publish(pub, f"{STATE}/kitchen/fingers", "5")
            publish(pub, f"{STATE}/kitchen/gesture", "open_palm")
            assert next_action(actions) == {"edge": "e1", "camera": "kitchen", "gesture": "open_palm",
                                            "action": "lights_on"}
            publish(pub, f"{STATE}/kitchen/gesture", "fist")
            assert next_action(actions)["action"] == "lights_off"
            # the same state again (an edge republishes its state on reconnect) and an unmapped gesture: nothing
            publish(pub, f"{STATE}/kitchen/gesture", "fist")
            publish(pub, f"{STATE}/kitchen/gesture", "victory")
            publish(pub, f"{STATE}/kitchen/gesture", "thumb_up")
            assert next_action(actions) == {"edge": "e1", "camera": "kitchen", "gesture": "thumb_up",
                                            "action": "volume_up"}
            # the debug node shows every state message (sidebar and Node-RED's log)
            wait_for_log(log, f"{STATE}/kitchen/fingers = 5")
            wait_for_log(log, f"{STATE}/kitchen/gesture = victory")
        assert actions.empty()


def test_an_edge_camera_drives_the_flow(
        private_mosquitto: tuple[str, subprocess.Popen[bytes]], tmp_path: Path, model_path: str) -> None:
    """The gesture comes from hgr itself: ``hgr edge`` with a file camera looping a fist and an open palm
    (p_0002, p_0001: the model's fist and open_palm), its state topics read by the docs' flow."""
    need(NODE_RED.exists(), f"Node-RED is not installed in {NODE_RED_DIR} (.ci/run installs it)")
    mqtt_url = private_mosquitto[0]
    port = int(mqtt_url.rsplit(":", 1)[1])
    clip = make_clip(tmp_path / "kitchen.mkv", [PHOTOS / "p_0002.jpg", PHOTOS / "p_0001.jpg"], fps=15,
                     frames_each=30, codec="mjpeg")
    env = {**os.environ, "WORKERS": "1", "HGR_MODEL_PATH": model_path, "LOG_FORMAT": "text", "EDGE_ID": "house",
           "EDGE_PORT": str(free_port()), "MQTT_URL": mqtt_url, "MQTT_TOPIC_PREFIX": "hgr/v1",
           "CAMERAS": f"kitchen=file://{clip}", "CAMERA_FPS": "5"}
    edge_log = tmp_path / "edge.log"
    with subscriber(port, ACTIONS) as actions, publisher(port) as pub, node_red(tmp_path, port) as (_, log):
        assert subscribed(pub, actions)["camera"] == "probe"
        with edge_log.open("wb") as out:  # cwd=tmp_path: no developer .env file can change the edge
            edge = subprocess.Popen([sys.executable, "-m", "hgr", "edge", "--host", "127.0.0.1"], cwd=tmp_path,
                                    env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            seen: list[dict[str, Any]] = []
            end = time.monotonic() + 180  # the model loads, then the clip shows each photo for 2 s in turn
            while {a["action"] for a in seen} != {"lights_on", "lights_off"}:
                assert edge.poll() is None, f"the edge exited: {edge_log.read_text()[-3000:]}"
                assert time.monotonic() < end, f"actions {seen}; edge: {edge_log.read_text()[-3000:]}"
                try:
                    seen.append(next_action(actions, timeout=1))
                except queue.Empty:
                    continue
            assert {(a["edge"], a["camera"]) for a in seen} == {("house", "kitchen")}
            assert {a["gesture"]: a["action"] for a in seen} == {"fist": "lights_off", "open_palm": "lights_on"}
            wait_for_log(log, "hgr/v1/edges/house/cameras/kitchen/fingers = 5")
            wait_for_log(log, "hgr/v1/edges/house/cameras/kitchen/fingers = 0")
        finally:
            stop_process(edge, timeout=30)
