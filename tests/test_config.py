"""Configuration: defaults, parsing, and start-up errors that name the variable and what it accepts."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hgr.common.config import Settings, load_settings, read_settings, settings_table, validate_edge_id
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


@pytest.mark.service
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
    table = settings_table().split("\n\n", 1)[1]  # below the sentence on HGR_ names
    assert table.count("\n") == len(dataclasses.fields(Settings)) + 1


def test_readme_carries_the_generated_table_and_its_prefix_note() -> None:
    table = settings_table()
    assert table in (ROOT / "README.md").read_text()
    assert "also read with an `HGR_` prefix" in table


def test_every_setting_is_also_read_with_the_hgr_prefix_which_wins() -> None:
    s = load_settings({"PORT": "9000", "HGR_PORT": "9001", "HGR_REDIS_PORT": "6380", "HGR_DEBUG": "true",
                       "HGR_LOG_LEVEL": "WARNING", "NUM_HANDS": "3"}, env_file=None)
    assert (s.port, s.redis_port, s.debug, s.log_level, s.num_hands) == (9001, 6380, True, "warning", 3)
    for f in dataclasses.fields(Settings):  # every setting: its HGR_ name is read, the plain one is not
        env = f.metadata["env"]
        if env.startswith("HGR_"):
            continue
        report = read_settings({f"HGR_{env}": "x", env: "y"}, env_file=None)
        assert getattr(report.settings, f.name) == "x" or f"HGR_{env}='x'" in report.errors[0], (env, report)
        assert not any(e.startswith(f"{env}=") for e in report.errors), (env, report.errors)


def test_names_that_start_with_hgr_have_one_form_only() -> None:
    s = load_settings({"HGR_MODEL_VARIANT": "lite", "HGR_HGR_MODEL_VARIANT": "full"}, env_file=None)
    assert s.model_variant == "lite"


def test_a_bad_prefixed_value_is_named_as_set() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"HGR_PORT": "x", "PORT": "8000"}, env_file=None)
    assert err.value.message == "HGR_PORT='x': expected an integer"


@pytest.mark.parametrize("env", ["REDIS_PORT", "PORT", "HOST", "EDGE_PORT", "METRICS_PORT", "WORKERS", "DEBUG"])
@pytest.mark.parametrize("link", ["tcp://10.0.0.5:6379", "udp://redis.default.svc:53", "tcp://[fd00:10:96::a]:6379"])
def test_a_kubernetes_service_link_in_a_plain_variable_is_ignored_with_a_warning(env: str, link: str) -> None:
    """A Service named `redis` makes Kubernetes inject REDIS_PORT=tcp://10.0.0.5:6379 (issue #22: it was
    "expected an integer", a crash at start-up)."""
    report = read_settings({env: link}, env_file=None)
    assert report.errors == [] and report.settings == load_settings({}, env_file=None)
    (warning,) = report.warnings
    assert warning.startswith(f"{env}={link!r} is a Kubernetes service link") and f"HGR_{env}" in warning
    # the prefixed name is the way to set it; then the link is not even looked at
    chosen = read_settings({env: link, f"HGR_{env}": "1"}, env_file=None)
    assert chosen.warnings == [] and chosen.errors == []


@pytest.mark.parametrize("value", ["tcp://", "http://10.0.0.5:6379", "tcp://10.0.0.5", "xtcp://h:1"])
def test_only_the_service_link_form_is_ignored(value: str) -> None:
    report = read_settings({"REDIS_PORT": value}, env_file=None)
    assert report.warnings == [] and report.errors == [f"REDIS_PORT={value!r}: expected an integer"]


def test_a_service_link_in_a_prefixed_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="HGR_REDIS_PORT='tcp://10.0.0.5:6379': expected an integer"):
        load_settings({"HGR_REDIS_PORT": "tcp://10.0.0.5:6379"}, env_file=None)


@pytest.mark.service
def test_config_check_lists_the_service_link_as_a_warning_and_passes(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "hgr", "config", "--check"], check=False, capture_output=True,
                          text=True, cwd=tmp_path, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "REDIS_PORT": "tcp://10.0.0.5:6379",
                               "HGR_MODEL_PATH": os.environ["HGR_MODEL_PATH"]})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "configuration OK (1 warning(s) above)\n"
    assert proc.stderr.startswith("hgr: warning: REDIS_PORT='tcp://10.0.0.5:6379' is a Kubernetes service link")
