"""Per-camera state topics on a real Mosquitto (docs/mqtt.md "Per-camera state"): retained, plain text,
``{prefix}/edges/{edge_id}/cameras/{name}/fingers|gesture|hands|available``, for a camera of CAMERAS and a
named WebSocket stream; read back by fresh subscribers, as a home-automation system would after a restart."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt import publish
from paho.mqtt.enums import CallbackAPIVersion

from hgr.common.config import load_settings
from hgr.common.errors import ConfigError
from hgr.common.inference.gestures import GESTURES
from hgr.common.inference.pool import InferencePool
from hgr.common.messaging.bus import make_bus
from hgr.edge import protocol
from hgr.edge.ha_discovery import discovery_configs
from hgr.edge.reporter import camera_values
from hgr.loadtest.ws_stream import load_frames, open_stream
from tests.camera_support import make_clip
from tests.support import eventually, recv_msg, serve_edge

LEAVES = ("fingers", "gesture", "hands", "available")


def retained(mqtt_url: str, topic_filter: str, wanted: set[str], timeout: float = 10.0) -> dict[str, str]:
    """What a fresh subscriber gets of ``topic_filter`` right after subscribing: the retained messages
    (waits until every topic in ``wanted`` has come, or ``timeout``). Every one must be flagged retained."""
    got: dict[str, str] = {}
    flags: list[bool] = []
    done = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        got[msg.topic] = msg.payload.decode()
        flags.append(bool(msg.retain))
        if wanted <= got.keys():
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.connect("127.0.0.1", int(mqtt_url.rsplit(":", 1)[1]))
    client.subscribe(topic_filter, qos=1)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.loop_stop()
        client.disconnect()
    assert all(flags), "state topics are retained"
    return got


def test_camera_values_are_plain_scalars() -> None:
    assert camera_values((3, (("Left", 1, "pointing_up"), ("Right", 2, "victory")))) == {
        "fingers": "3", "hands": "2", "gesture": "pointing_up"}
    assert camera_values((0, ())) == {"fingers": "0", "hands": "0", "gesture": "none"}


@pytest.mark.asyncio(loop_scope="module")
async def test_state_topics_of_a_camera_and_a_named_stream(
        edge_pool: InferencePool, model_path: str, mqtt_url: str, hand_photos: list[tuple[Path, int]],
        tmp_path: Path) -> None:
    photo = next(p for p, n in hand_photos if n == 5)
    clip = make_clip(tmp_path / "demo.mkv", [photo], fps=15, frames_each=15, codec="mjpeg")
    prefix = f"test-camtopics-{uuid.uuid4().hex[:8]}"
    base = f"{prefix}/edges/topics-edge/cameras"
    settings = load_settings({}, env_file=None, model_path=model_path, max_fps=1000.0, edge_id="topics-edge",
                             cameras=f"demo=file://{clip}", camera_fps=5.0, mqtt_url=mqtt_url,
                             mqtt_topic_prefix=prefix, event_debounce_ms=200.0)
    frame = load_frames(photo.parent, limit=1)[0]
    async with serve_edge(settings, edge_pool, bus=make_bus(settings)) as (node, url):
        camera = node.cameras.cameras[0]
        ws, _ = await open_stream(f"{url}?camera=desk")
        last: dict[str, Any] = {}

        async def stream_until_published() -> bool:
            await ws.send(protocol.encode_frame(0, frame))
            last.update(await recv_msg(ws))
            topics = await asyncio.to_thread(retained, mqtt_url, f"{base}/desk/#", {f"{base}/desk/fingers"}, 1.0)
            return f"{base}/desk/fingers" in topics

        await eventually(stream_until_published, 60, "the named stream's state published", interval=0)
        wanted = {f"{base}/{name}/{leaf}" for name in ("demo", "desk") for leaf in LEAVES}
        state = await eventually(lambda: _all(mqtt_url, f"{base}/#", wanted), 60, "all the state topics retained")
        assert state[f"{base}/desk/available"] == "online" and state[f"{base}/demo/available"] == "online"
        assert state[f"{base}/desk/fingers"] == str(last["total_fingers"])
        assert state[f"{base}/desk/hands"] == str(len(last["hands"]))
        assert state[f"{base}/desk/gesture"] == (last["hands"][0]["gesture"] if last["hands"] else "none")
        assert camera.last is not None
        assert state[f"{base}/demo/fingers"] == str(camera.last["total_fingers"])
        assert state[f"{base}/demo/hands"] == str(len(camera.last["hands"]))
        assert all(state[t].isdigit() for t in state if t.endswith(("/fingers", "/hands")))

        await ws.close()  # a named stream that closes: offline, the rest of its state kept
        await eventually(lambda: _is(mqtt_url, f"{base}/desk/available", "offline"), 30, "desk offline")
    # the edge stopped cleanly: every camera offline (a crash: the edge's status Will, docs/mqtt.md)
    await eventually(lambda: _is(mqtt_url, f"{base}/demo/available", "offline"), 30, "demo offline")
    assert (await asyncio.to_thread(retained, mqtt_url, f"{base}/demo/fingers", {f"{base}/demo/fingers"})
            )[f"{base}/demo/fingers"].isdigit()


async def _all(mqtt_url: str, topic_filter: str, wanted: set[str]) -> dict[str, str] | None:
    got = await asyncio.to_thread(retained, mqtt_url, topic_filter, wanted, 2.0)
    return got if wanted <= got.keys() else None


async def _is(mqtt_url: str, topic: str, value: str) -> bool:
    return (await asyncio.to_thread(retained, mqtt_url, topic, {topic}, 2.0)).get(topic) == value


# --- Home Assistant discovery (HA_DISCOVERY) ---


def test_discovery_needs_json_payloads_and_a_node_id_edge_id() -> None:
    with pytest.raises(ConfigError, match="MQTT_PAYLOAD=json"):
        load_settings({"HA_DISCOVERY": "true", "MQTT_PAYLOAD": "msgpack", "EDGE_ID": "house"}, env_file=None)
    with pytest.raises(ConfigError, match="EDGE_ID"):
        load_settings({"HA_DISCOVERY": "true", "EDGE_ID": "house.lan"}, env_file=None)
    assert load_settings({"HA_DISCOVERY": "true", "EDGE_ID": "house-1"}, env_file=None).ha_discovery


def test_discovery_configs_of_a_camera() -> None:
    configs = discovery_configs("homeassistant", "hgr/v1", "house", "kitchen", "1.0.0")
    sensors = {t: c for t, c in configs.items() if "/sensor/" in t}
    triggers = {t: c for t, c in configs.items() if "/device_automation/" in t}
    assert set(sensors) == {f"homeassistant/sensor/house/kitchen_{w}/config" for w in ("fingers", "hands", "gesture")}
    assert {c["subtype"] for c in triggers.values()} == set(GESTURES) - {"none"}
    for config in sensors.values():
        assert config["state_topic"].startswith("hgr/v1/edges/house/cameras/kitchen/")
        assert [a["topic"] for a in config["availability"]] == ["hgr/v1/edges/house/status",
                                                                 "hgr/v1/edges/house/cameras/kitchen/available"]
        assert config["availability_mode"] == "all"
    for config in triggers.values():
        assert config["topic"] == "hgr/v1/edges/house/cameras/kitchen/gesture"
        assert config["payload"] == config["subtype"] and config["automation_type"] == "trigger"
    assert len({json.dumps(c["device"]) for c in configs.values()}) == 1, "one device per camera"


@pytest.mark.asyncio(loop_scope="module")
async def test_discovery_is_retained_and_a_removed_camera_loses_its_entities(
        edge_pool: InferencePool, model_path: str, mqtt_url: str, hand_photos: list[tuple[Path, int]],
        tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "demo.mkv", [hand_photos[0][0]], fps=15, frames_each=15, codec="mjpeg")
    ha = f"test-ha-{uuid.uuid4().hex[:8]}"
    prefix = f"test-hgr-{uuid.uuid4().hex[:8]}"
    # what an earlier run published for a camera since taken out of CAMERAS
    stale = f"{ha}/sensor/ha-edge/gone_fingers/config"
    stale_trigger = f"{ha}/device_automation/ha-edge/gone_gesture_ok/config"
    publish.multiple([{"topic": t, "payload": '{"name": "old"}', "qos": 1, "retain": True}
                      for t in (stale, stale_trigger)], hostname="127.0.0.1", port=int(mqtt_url.rsplit(":", 1)[1]))
    settings = load_settings({}, env_file=None, model_path=model_path, edge_id="ha-edge", mqtt_url=mqtt_url,
                             mqtt_topic_prefix=prefix, cameras=f"demo=file://{clip}", camera_fps=5.0,
                             ha_discovery=True, ha_discovery_prefix=ha)
    expected = discovery_configs(ha, prefix, "ha-edge", "demo", settings.app_version)
    async with serve_edge(settings, edge_pool, bus=make_bus(settings)):
        def gone_and_all_there() -> dict[str, str] | None:
            got = retained(mqtt_url, f"{ha}/#", set(expected), 2.0)
            return got if set(got) == set(expected) else None

        got = await eventually(lambda: asyncio.to_thread(gone_and_all_there), 60,
                               "every discovery config retained, the removed camera's gone")
        assert {t: json.loads(v) for t, v in got.items()} == expected
        assert len(expected) == 3 + len(GESTURES) - 1
    try:
        # the retained configs outlive the edge (Home Assistant keeps the entities, unavailable via the status)
        assert set(await asyncio.to_thread(retained, mqtt_url, f"{ha}/#", set(expected))) == set(expected)
    finally:
        publish.multiple([{"topic": t, "payload": b"", "qos": 1, "retain": True} for t in expected],
                         hostname="127.0.0.1", port=int(mqtt_url.rsplit(":", 1)[1]))
