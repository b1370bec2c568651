"""A real Home Assistant core against a real edge (docs/integrations.md): run by deploy/dev/ha-real-check.sh.

An edge (``hgr edge``, one worker) with ``HA_DISCOVERY=true`` reads a file camera made from two labelled photos
(a fist, then a victory sign, looped); Home Assistant (its MQTT integration configured as a config entry, HTTP
on 127.0.0.1 only) runs next to it on the same broker. Checked, each on a real signal with a bounded wait:

1. Home Assistant registers the camera's device and its three sensors (its entity and device registries);
2. after a restart with an automation on the device trigger ``gesture``/``victory`` (whose action publishes
   to a test topic), the trigger fires when the file camera shows the victory photo;
3. the sensors hold the camera's values (``fingers``, ``hands``, ``gesture``) when Home Assistant stops.

Usage: ``python deploy/dev/ha_real_check.py HA_PYTHON_BIN_DIR MQTT_PORT`` from the repository root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from camera_support import make_clip

from hgr.loadtest.procs import free_port, stop_process, wait_ready


def wait(check: Callable[[], Any], seconds: float, what: str) -> Any:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if value := check():
            return value
        time.sleep(0.5)
    raise SystemExit(f"FAILED: {what} within {seconds:.0f} s")


def registry(conf: Path, name: str) -> list[dict[str, Any]]:
    path = conf / ".storage" / f"core.{name}_registry"
    if not path.is_file():
        return []
    key = "entities" if name == "entity" else "devices"
    entries: list[dict[str, Any]] = json.loads(path.read_text())["data"][key]
    return entries


def start_ha(bin_dir: Path, conf: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(bin_dir / "hass"), "-c", str(conf), "--skip-pip"], stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)


def main() -> None:
    bin_dir, mqtt_port = Path(sys.argv[1]), int(sys.argv[2])
    work = Path(tempfile.mkdtemp(prefix="hgr-ha-"))
    conf = work / "conf"
    (conf / ".storage").mkdir(parents=True)
    run = uuid.uuid4().hex[:6]
    edge_id, ha_prefix, topic_prefix, fired_topic = f"ha-{run}", f"ha-{run}-discovery", f"hgr-{run}", f"hgr-{run}/fired"
    photos = ROOT / "tests" / "fixtures" / "hands"
    clip = make_clip(work / "clip.mkv", [photos / "p_0002.jpg", photos / "p_0022.jpg"], fps=15, frames_each=45,
                     codec="mjpeg")  # a fist, then a victory sign (the photos' gestures as the model sees them)
    (conf / "configuration.yaml").write_text(
        "homeassistant:\n  name: hgr-check\n  time_zone: UTC\nautomation: !include automations.yaml\n"
        f"http:\n  server_host: 127.0.0.1\n  server_port: {free_port()}\n"
        "logger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: info\n")
    (conf / "automations.yaml").write_text("[]\n")
    (conf / ".storage" / "core.config_entries").write_text(json.dumps({
        "version": 1, "minor_version": 1, "key": "core.config_entries", "data": {"entries": [{
            "entry_id": uuid.uuid4().hex, "version": 1, "minor_version": 1, "domain": "mqtt", "title": "mosquitto",
            "data": {"broker": "127.0.0.1", "port": mqtt_port, "discovery": True, "discovery_prefix": ha_prefix},
            "options": {}, "pref_disable_new_entities": False, "pref_disable_polling": False, "source": "user",
            "unique_id": None, "disabled_by": None}]}}))
    port = free_port()
    env = {**os.environ, "WORKERS": "1", "EDGE_PORT": str(port), "EDGE_ID": edge_id,
           "MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}", "MQTT_TOPIC_PREFIX": topic_prefix, "HA_DISCOVERY": "true",
           "HA_DISCOVERY_PREFIX": ha_prefix, "CAMERAS": f"demo=file://{clip}", "CAMERA_FPS": "5",
           "LOG_FORMAT": "text"}
    fired: list[str] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.on_message = lambda c, u, m: fired.append(m.payload.decode())
    watcher.connect("127.0.0.1", mqtt_port)
    watcher.subscribe(fired_topic, qos=1)
    watcher.loop_start()
    edge = subprocess.Popen([sys.executable, "-m", "hgr", "edge"], env=env, stdout=(work / "edge.log").open("wb"),
                            stderr=subprocess.STDOUT, cwd=ROOT)
    ha: subprocess.Popen[bytes] | None = None
    try:
        wait_ready(f"http://127.0.0.1:{port}", edge, 180)
        ha = start_ha(bin_dir, conf, work / "ha.log")
        device = wait(lambda: next((d for d in registry(conf, "device")
                                    if ["mqtt", f"hgr_{edge_id}_demo"] in d["identifiers"]), None), 180,
                      "the camera's device in Home Assistant's device registry")
        sensors = wait(lambda: sorted(e["unique_id"] for e in registry(conf, "entity")
                                      if e.get("unique_id", "").startswith(f"hgr_{edge_id}_demo_")) or None, 60,
                       "the camera's sensors in Home Assistant's entity registry")
        print(f"1. device {device['name']!r} ({device['id']}) with sensors {sensors}")
        ha.terminate()
        ha.wait(60)
        (conf / "automations.yaml").write_text(
            f"- id: hgr_victory\n  alias: victory at the demo camera\n  trigger:\n    - platform: device\n"
            f"      domain: mqtt\n      device_id: {device['id']}\n      type: gesture\n      subtype: victory\n"
            f"      discovery_id: {edge_id} demo_gesture_victory\n  action:\n    - service: mqtt.publish\n"
            f"      data:\n        topic: {fired_topic}\n        payload: \"{{{{ trigger.payload }}}}\"\n")
        ha = start_ha(bin_dir, conf, work / "ha.log")
        wait(lambda: len(fired) >= 2, 180, "the device trigger gesture/victory to fire twice")
        print(f"2. the device trigger fired: {fired[:2]} (the clip shows the victory sign every 6 s)")
        ha.terminate()
        ha.wait(60)
        ha = None
        restored = json.loads((conf / ".storage" / "core.restore_state").read_text())["data"]
        states = {s["state"]["entity_id"]: s["state"]["state"] for s in restored
                  if s["state"]["entity_id"].startswith("sensor.hgr_")}
        print(f"3. sensor states when Home Assistant stopped: {states}")
        assert len(states) == 3 and all(v not in ("unknown", "unavailable") for v in states.values()), states
        print(f"PASSED (logs in {work})")
    finally:
        if ha is not None and ha.poll() is None:
            ha.terminate()
            ha.wait(60)
        stop_process(edge)
        watcher.loop_stop()
        watcher.disconnect()
        clear_retained(mqtt_port, [f"{ha_prefix}/#", f"{topic_prefix}/#"])


def clear_retained(mqtt_port: int, filters: list[str]) -> None:
    """Leave the shared broker as it was: an empty retained message on every retained topic of the run."""
    topics: set[str] = set()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: topics.add(m.topic) if m.retain and m.payload else None
    client.connect("127.0.0.1", mqtt_port)
    for f in filters:
        client.subscribe(f, qos=1)
    client.loop_start()
    time.sleep(2)  # retained messages arrive right after the subscription; nothing else to wait on here
    for topic in topics:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


if __name__ == "__main__":
    main()
