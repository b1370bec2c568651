"""Validate the edge's Home Assistant discovery payloads with Home Assistant's own schemas.

Runs under a Python that has ``homeassistant`` installed (deploy/dev/ha-discovery-check.sh makes one); reads
``{"prefix": ..., "configs": {topic: payload}}`` as JSON on stdin (what ``hgr.edge.ha_discovery`` builds) and
puts every payload through what Home Assistant's MQTT integration does with a discovery message: the topic
pattern and component list of ``mqtt.discovery``, then the platform's discovery schema (``mqtt.sensor
.DISCOVERY_SCHEMA``, ``mqtt.device_trigger.TRIGGER_DISCOVERY_SCHEMA`` and, for a trigger, the ``mqtt``
trigger schema it attaches). Those schemas drop unknown keys silently (``REMOVE_EXTRA``), so a key of ours
that did not survive validation is reported too. Exit status 0 when every payload passes.
"""

import json
import sys

import homeassistant.components.persistent_notification  # noqa: F401 - first: breaks an import cycle of HA's
from homeassistant.components.mqtt import device_trigger, discovery, sensor
from homeassistant.components.mqtt import trigger as mqtt_trigger
from homeassistant.const import __version__

doc = json.load(sys.stdin)
prefix, configs = doc["prefix"], doc["configs"]
failures = []
for topic, payload in configs.items():
    trimmed = topic.replace(f"{prefix}/", "", 1)
    match = discovery.TOPIC_MATCHER.match(trimmed)
    if not match or match.group(0) != trimmed:
        failures.append(f"{topic}: not a discovery topic Home Assistant accepts")
        continue
    component = match.group("component")
    if component not in discovery.SUPPORTED_COMPONENTS:
        failures.append(f"{topic}: component {component} not supported")
        continue
    try:
        if component == "sensor":
            validated = sensor.DISCOVERY_SCHEMA(dict(payload))
        elif component == "device_automation":
            validated = device_trigger.TRIGGER_DISCOVERY_SCHEMA(dict(payload))
            mqtt_trigger.TRIGGER_SCHEMA({"platform": "mqtt", "topic": validated["topic"],
                                         "payload": validated["payload"], "encoding": "utf-8", "qos": 0})
        else:
            failures.append(f"{topic}: no check for component {component}")
            continue
    except Exception as exc:  # noqa: BLE001 - voluptuous' Invalid and friends: report them all
        failures.append(f"{topic}: {type(exc).__name__}: {exc}")
        continue
    dropped = set(payload) - set(validated)
    if dropped:
        failures.append(f"{topic}: keys Home Assistant ignores: {sorted(dropped)}")
print(f"Home Assistant {__version__}: {len(configs) - len(failures)} of {len(configs)} discovery payloads valid")
for failure in failures:
    print("  " + failure)
sys.exit(1 if failures else 0)
