# Sourced by the Home Assistant check scripts: HA_VENV (default .venv-ha) holds Home Assistant core 2024.1.6,
# the last release that runs on Python 3.11 (the project's Python), made on first use (~150 packages).
HA_VENV=${HA_VENV:-.venv-ha}
if [ ! -x "$HA_VENV/bin/hass" ]; then
  python3.11 -m venv "$HA_VENV"
  "$HA_VENV/bin/pip" install -q "homeassistant==2024.1.6"
fi
