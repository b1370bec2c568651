"""Configuration: defaults, parsing, and start-up errors that name the variable and what it accepts."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hgr.common.config import Settings, load_settings, settings_table, validate_edge_id
from hgr.common.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_need_no_environment() -> None:
    s = load_settings({}, env_file=None)
    assert s.port == 8000
    assert s.max_image_size == 20 * 1024 * 1024
    assert s.auth_enabled is False
    assert s.resolved_redis_url() is None
    assert s.resolved_workers() >= 1


def test_values_are_parsed_by_type() -> None:
    s = load_settings({"PORT": "9000", "DEBUG": "yes", "RATE_LIMIT_WINDOW": "1.5", "LOG_LEVEL": "WARNING",
                       "REDIS_ENABLED": "true", "REDIS_PORT": "6380"}, env_file=None)
    assert (s.port, s.debug, s.rate_limit_window, s.log_level) == (9000, True, 1.5, "warning")
    assert s.resolved_redis_url() == "redis://127.0.0.1:6380/0"


@pytest.mark.parametrize("env, fragment", [
    ({"PORT": "abc"}, "PORT='abc': expected an integer"),
    ({"MAX_IMAGE_SIZE": "-5"}, "MAX_IMAGE_SIZE='-5': must be ≥ 1"),
    ({"PORT": "70000"}, "PORT='70000': must be ≥ 0 and ≤ 65535"),
    ({"DEBUG": "maybe"}, "DEBUG='maybe': expected a boolean"),
    ({"HGR_MODEL_VARIANT": "huge"}, "HGR_MODEL_VARIANT='huge': expected one of full, lite"),
    ({"RATE_LIMIT_FAIL": "sideways"}, "RATE_LIMIT_FAIL='sideways': expected one of open, closed"),
    ({"MIN_TRACKING_CONFIDENCE": "1.5"}, "MIN_TRACKING_CONFIDENCE='1.5': must be ≥ 0 and ≤ 1"),
    ({"EDGE_ID": "a/b"}, "EDGE_ID='a/b' is not a valid edge id"),
    ({"AUTH_ENABLED": "true"}, "AUTH_ENABLED=true needs API_KEYS"),
    ({"MQTT_URL": "http://x"}, "MQTT_URL"),
    ({"EDGE_STALE_AFTER": "nan"}, "EDGE_STALE_AFTER='nan': expected a finite number"),  # found by tests/fuzz
    ({"IDLE_TIMEOUT": "1e309"}, "IDLE_TIMEOUT='1e309': expected a finite number"),
])
def test_bad_values_stop_start_up_with_the_variable_named(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env, env_file=None)
    assert fragment in err.value.message


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=7000\nAPP_NAME=from-file\n")
    s = load_settings({"PORT": "7001"}, env_file=env_file)
    assert (s.port, s.app_name) == (7001, "from-file")


@pytest.mark.parametrize("edge_id", ["cam+1", "cam#", "a/b", "", "x" * 65, "has space"])
def test_edge_id_rejects_topic_breakers(edge_id: str) -> None:
    with pytest.raises(ConfigError):
        validate_edge_id(edge_id)


def test_public_view_masks_secrets() -> None:
    s = load_settings({"API_KEYS": "ops:s3cret", "MQTT_URL": "mqtt://u:pw@h:1883"}, env_file=None)
    shown = s.public()
    assert shown["API_KEYS"] == "***" and shown["MQTT_URL"] == "***"
    assert "s3cret" not in repr(shown)


def test_cli_reports_bad_config_and_exits_nonzero() -> None:
    proc = subprocess.run([sys.executable, "-m", "hgr", "config", "--check"], check=False, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "WORKERS": "-1"}, cwd=ROOT)
    assert proc.returncode == 2
    assert "WORKERS='-1'" in proc.stderr


def test_every_variable_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [f.metadata["env"] for f in dataclasses.fields(Settings) if f"`{f.metadata['env']}`" not in readme]
    assert not missing, f"README lacks: {missing}"


def test_shipped_env_files_load() -> None:
    for name in ("env.example", "env.production"):
        values = dict(re.findall(r"^([A-Z_0-9]+)=(.*)$", (ROOT / name).read_text(), re.MULTILINE))
        known = {f.metadata["env"] for f in dataclasses.fields(Settings)}
        assert set(values) <= known, f"{name} sets unknown variables {set(values) - known}"
        if name == "env.production":
            values["API_KEYS"] = "ops:x"  # the file leaves the secret to the operator
            s = load_settings(values, env_file=None)
            assert s.auth_enabled and s.host == "0.0.0.0"


def test_settings_table_lists_every_field() -> None:
    table = settings_table()
    assert table.count("\n") == len(dataclasses.fields(Settings)) + 1
