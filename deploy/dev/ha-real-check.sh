#!/usr/bin/env bash
# A real Home Assistant core (2024.1.6, the last release on Python 3.11, in a venv of its own: ~150 packages)
# against a real edge and the broker on 127.0.0.1 (MQTT_PORT, default 1883): discovery registers the camera's
# device and sensors, a device trigger fires when the file camera shows that gesture, the sensors hold the
# camera's values. deploy/dev/ha_real_check.py says what it checks. Not part of `make test` (the install).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/dev/ha-venv.sh
. deploy/dev/ha-venv.sh
# The MQTT integration's own requirements and those of its dependencies (file_upload, http), as their manifests pin
# them; Home Assistant runs with --skip-pip.
"$HA_VENV/bin/pip" install -q "paho-mqtt==1.6.1" "janus==1.0.0" "aiohttp_cors==0.7.0" \
  "aiohttp-fast-url-dispatcher==0.3.0" "aiohttp-zlib-ng==0.1.3"
.venv/bin/python deploy/dev/ha_real_check.py "$HA_VENV/bin" "${MQTT_PORT:-1883}"
