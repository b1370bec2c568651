#!/usr/bin/env bash
# Validates the edge's Home Assistant MQTT discovery payloads (edge/ha_discovery.py) with Home Assistant's own
# schemas (deploy/dev/ha_discovery_check.py), in a venv of its own: Home Assistant is a large install (~150
# packages), so this is a script run before a change to the discovery payloads, not part of `make test`.
# 2024.1.6 is the last Home Assistant release that runs on Python 3.11 (the project's Python).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/dev/ha-venv.sh
. deploy/dev/ha-venv.sh
.venv/bin/python - <<'PY' | "$HA_VENV/bin/python" deploy/dev/ha_discovery_check.py
import json
from hgr.edge.ha_discovery import discovery_configs
configs = {}
for edge_id, topic_prefix, camera in (("house", "hgr/v1", "kitchen"), ("edge-2_b", "site/a/hgr", "door_2-x")):
    configs.update(discovery_configs("homeassistant", topic_prefix, edge_id, camera, "1.0.0"))
print(json.dumps({"prefix": "homeassistant", "configs": configs}))
PY
