"""Every check a server makes before it starts, in one function: ``hgr config --check`` runs it, and so
do ``hgr up``, ``hgr hub`` and ``hgr edge`` (``hgr.serve.run``) before they bind a port, so the two can
never disagree.

``check_startup`` collects every problem instead of stopping at the first: each value's parsing and the
checks between values (``common.config.read_settings``), then what lies beyond the values: files that
must exist and be readable (the model bundles, the MQTT certificates, ``WEB_DIR``, an ``API_KEYS``
file), the metrics port against the service's own, the ``API_KEYS`` entries, the MQTT topic prefix and
share group, the model's pinned digest, and whether a model is there at all (a missing one is a
warning: start-up fetches it).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any

from hgr.common.auth import parse_api_keys
from hgr.common.config import Settings, SettingsReport, problems_message, read_settings
from hgr.common.errors import ConfigError
from hgr.common.inference.hands.runtime import choose_here, cpu_flags, has_bf16
from hgr.common.inference.model import cache_path, check_bundle

# service -> the field holding its port
SERVICE_PORTS = {"up": "port", "hub": "port", "edge": "edge_port"}

# (field, variable, "file" or "dir"): paths that, when set, must name something readable
_PATHS = (("mqtt_ca_file", "MQTT_CA_FILE", "file"), ("mqtt_client_cert", "MQTT_CLIENT_CERT", "file"),
          ("mqtt_client_key", "MQTT_CLIENT_KEY", "file"), ("web_dir", "WEB_DIR", "dir"))
_MODELS = (("model_path", "HGR_MODEL_PATH"), ("model_lite_path", "HGR_MODEL_LITE_PATH"))


def path_problem(value: str, kind: str) -> str | None:
    """Why ``value`` is not a readable file (``kind`` "file") or directory ("dir"); None when it is."""
    path = Path(os.path.expanduser(value))
    try:
        path.stat()
    except FileNotFoundError:
        return f"no such {'directory' if kind == 'dir' else 'file'}"
    except OSError as exc:  # a folder on the way that this user may not enter, a loop of links, …
        return f"cannot be read ({exc.strerror or exc})"
    if kind == "dir":
        if not path.is_dir():
            return "not a directory"
        if not os.access(path, os.R_OK | os.X_OK):
            return "the directory cannot be read"
        return None
    if path.is_dir():
        return "a directory, not a file"
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def check_startup(service: str = "up", environ: dict[str, str] | None = None, env_file: str | Path | None = ".env",
                  **overrides: Any) -> SettingsReport:
    """All the problems start-up of ``service`` (``up``, ``hub`` or ``edge``) would meet, at once."""
    report = read_settings(environ, env_file, **overrides)
    s, errors, warnings = report.settings, list(report.errors), list(report.warnings)
    port_field = SERVICE_PORTS[service]
    port = getattr(s, port_field)
    if s.metrics_port and s.metrics_port == port and {"metrics_port", port_field}.isdisjoint(report.invalid):
        errors.append(f"METRICS_PORT={s.metrics_port} is the server's own port ({port_field.upper()} of "
                      f"`hgr {service}`): choose another, or leave it unset for /metrics on the main port")
    for name, env, kind in _PATHS:
        value = getattr(s, name)
        problem = value and path_problem(value, kind)
        if problem:
            errors.append(f"{env}={value!r}: {problem}")
    if s.api_keys and "api_keys" not in report.invalid and not (
            s.api_keys.startswith("@") and not Path(s.api_keys[1:]).is_file()):  # read_settings said so
        try:
            parse_api_keys(s.api_keys)
        except ConfigError as exc:
            errors.append(exc.message)
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"API_KEYS={s.api_keys!r}: the file cannot be read ({exc})")
    if s.model_sha256 and not re.fullmatch(r"[0-9a-f]{64}", s.model_sha256):
        errors.append(f"HGR_MODEL_SHA256={s.model_sha256!r}: expected a SHA-256, 64 lowercase hexadecimal digits")
    if not s.mqtt_topic_prefix.strip("/") or any(c in s.mqtt_topic_prefix for c in "+#"):
        errors.append(f"MQTT_TOPIC_PREFIX={s.mqtt_topic_prefix!r}: a topic prefix is not empty and holds no MQTT "
                      "wildcard (+ or #)")
    if not s.mqtt_share_group or any(c in s.mqtt_share_group for c in "/+#"):
        errors.append(f"MQTT_SHARE_GROUP={s.mqtt_share_group!r}: a shared-subscription group is one topic level, "
                      "not empty, without /, + or #")
    for name, env in _MODELS:
        value = getattr(s, name)
        problem = value and (path_problem(value, "file") or _bundle_problem(value))
        if problem:
            errors.append(f"{env}={value!r}: {problem}")
    if s.stream_pipeline == "mediapipe" and "stream_pipeline" not in report.invalid \
            and importlib.util.find_spec("mediapipe") is None:
        errors.append("STREAM_PIPELINE=mediapipe: the fallback engine needs the mediapipe package, which this "
                      "installation leaves out (the images do unless built with --build-arg "
                      "HGR_FALLBACK_ENGINE=true; docs/deployment.md \"Image size\")")
    if s.stream_pipeline == "litert" and not {"inference_runtime", "inference_precision"} & set(report.invalid):
        try:  # the error a worker would otherwise die of: OpenVINO not installed, bf16 on LiteRT
            choice = choose_here(s.inference_runtime, s.inference_precision)
        except ValueError as exc:
            errors.append(str(exc))
        else:
            if choice.precision == "bf16" and not has_bf16(cpu_flags()):
                warnings.append("INFERENCE_PRECISION=bf16: this CPU has no bf16 arithmetic (avx512_bf16, amx_bf16), "
                                "so OpenVINO runs the models in fp32 here, no faster than LiteRT")
    if not s.model_path and not cache_path(s).is_file():
        warnings.append(f"no model bundle yet: HGR_MODEL_PATH is unset and {cache_path(s)} is absent, so "
                        "start-up will download or build one (`hgr model fetch` does it now)")
    return SettingsReport(s, errors, warnings, report.invalid)


def _bundle_problem(value: str) -> str | None:
    try:
        check_bundle(Path(os.path.expanduser(value)))
    except ValueError as exc:
        return str(exc)
    return None


def startup_settings(service: str, **overrides: Any) -> tuple[Settings, list[str]]:
    """The settings a server starts with, and the warnings to log once logging is set up; ConfigError
    naming every problem (``check_startup``) when there is any."""
    report = check_startup(service, **overrides)
    if report.errors:
        raise ConfigError(problems_message(report.errors))
    return report.settings, report.warnings
