"""Home Assistant MQTT discovery for the edge's cameras (``HA_DISCOVERY=true``), pure: topics and payloads.

Per camera of ``CAMERAS`` one HA *device* (``hgr <edge> <camera>``) with three sensors reading the camera's
state topics (docs/mqtt.md "Per-camera state"): ``fingers``, ``hands`` (numbers) and ``gesture`` (text),
and one *device trigger* per gesture name, fired when the camera's ``gesture`` topic says that name.
Discovery topics are ``{HA_DISCOVERY_PREFIX}/{sensor|device_automation}/{edge_id}/{camera}_{what}/config``:
the edge id is the discovery *node id*, so a broker ACL can give each edge its own discovery topics
(``pattern write homeassistant/+/%u/+/config``), and the edge can find the configs it published before
(a camera removed from ``CAMERAS`` has its entities removed: an empty retained config).

Availability: both the edge's ``status`` (its Last Will, JSON) and the camera's ``available`` topic, with
``availability_mode: all``: an entity is available while the edge is online and its camera delivers frames.
"""

from __future__ import annotations

import re
from typing import Any

from hgr.common.inference.gestures import GESTURES
from hgr.common.messaging.topics import camera_topic, edge_topic

NODE_ID = re.compile(r"[a-zA-Z0-9_-]+")  # Home Assistant's rule for a discovery node id / object id
SENSORS = ("fingers", "hands", "gesture")
TRIGGER_GESTURES = tuple(g for g in GESTURES if g != "none")


def valid_node_id(edge_id: str) -> bool:
    return bool(NODE_ID.fullmatch(edge_id))


def discovery_filter(ha_prefix: str, edge_id: str) -> str:
    """Every discovery config this edge publishes (and published before)."""
    return f"{ha_prefix}/+/{edge_id}/+/config"


def device(edge_id: str, camera: str, version: str) -> dict[str, Any]:
    return {"identifiers": [f"hgr_{edge_id}_{camera}"], "name": f"hgr {edge_id} {camera}", "manufacturer": "hgr",
            "model": "hand-gesture camera", "sw_version": version}


def discovery_configs(ha_prefix: str, topic_prefix: str, edge_id: str, camera: str,
                      version: str) -> dict[str, dict[str, Any]]:
    """{discovery topic: config payload} of one camera: three sensors and a trigger per gesture."""
    dev = device(edge_id, camera, version)
    availability = [{"topic": edge_topic(topic_prefix, edge_id, "status"), "value_template": "{{ value_json.status }}"},
                    {"topic": camera_topic(topic_prefix, edge_id, camera, "available")}]
    configs: dict[str, dict[str, Any]] = {}
    for what in SENSORS:
        config: dict[str, Any] = {
            "name": what.capitalize(), "unique_id": f"hgr_{edge_id}_{camera}_{what}",
            "state_topic": camera_topic(topic_prefix, edge_id, camera, what),
            "availability": availability, "availability_mode": "all",
            "payload_available": "online", "payload_not_available": "offline",
            "icon": "mdi:hand-back-right" if what != "gesture" else "mdi:gesture", "device": dev}
        if what != "gesture":
            config["state_class"] = "measurement"
        configs[f"{ha_prefix}/sensor/{edge_id}/{camera}_{what}/config"] = config
    for gesture in TRIGGER_GESTURES:
        configs[f"{ha_prefix}/device_automation/{edge_id}/{camera}_gesture_{gesture}/config"] = {
            "automation_type": "trigger", "topic": camera_topic(topic_prefix, edge_id, camera, "gesture"),
            "type": "gesture", "subtype": gesture, "payload": gesture, "device": dev}
    return configs
