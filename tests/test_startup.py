"""Start-up checks (hgr.startup): `hgr config --check` and a server's start-up run the same checks,
report every problem at once, and exit 2 (issue #22)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette

from hgr import cli
from hgr.common.config import Settings
from hgr.common.errors import ConfigError
from hgr.serve import run
from hgr.startup import check_startup
from tests.support import need

ROOT = Path(__file__).resolve().parent.parent

# A value start-up refuses, for every text setting that can have one. Numbers, booleans and choices get
# theirs from their type (below); a new text setting must be added here or to FREE_TEXT.
BAD_TEXT = {
    "EDGE_ID": "a/b",
    "API_KEYS": "foo",
    "MQTT_URL": "http://broker",
    "REDIS_URL": "ftp://x",
    "REDIS_SENTINELS": "host:port",
    "RATE_LIMIT_REDIS_URL": "ftp://x",
    "HGR_MODEL_PATH": "/nonexistent.task",
    "HGR_MODEL_LITE_PATH": "/nonexistent-lite.task",
    "HGR_MODEL_SHA256": "abc",
    "MQTT_CA_FILE": "/nonexistent.pem",
    "MQTT_CLIENT_CERT": "/nonexistent-cert.pem",
    "MQTT_CLIENT_KEY": "/nonexistent-key.pem",
    "WEB_DIR": "/nonexistent",
    "MQTT_TOPIC_PREFIX": "hgr/+",
    "MQTT_SHARE_GROUP": "a/b",
    "CAMERAS": "Kitchen=rtsp://cam/s",
    "HA_DISCOVERY_PREFIX": "home assistant",
}
# Text no check can call wrong before it is used (a host, a name, a URL fetched only when needed).
FREE_TEXT = {"APP_NAME", "APP_VERSION", "HOST", "HGR_MODEL_CACHE_DIR", "HGR_MODEL_URL", "HGR_MODEL_INDEX_URL",
             "REDIS_HOST", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD", "REDIS_KEY_PREFIX", "MQTT_CLIENT_ID",
             "FORWARDED_ALLOW_IPS", "WS_ALLOWED_ORIGINS"}


def bad_value(f: dataclasses.Field[object]) -> str | None:
    if f.metadata["choices"]:
        return "bogus"
    return {"bool": "maybe", "int": "x", "float": "x"}.get(str(f.type), BAD_TEXT.get(f.metadata["env"]))


def test_every_text_setting_is_classified() -> None:
    text = {f.metadata["env"] for f in dataclasses.fields(Settings) if f.type == "str" and not f.metadata["choices"]}
    assert text == set(BAD_TEXT) | FREE_TEXT


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_path: str) -> Iterator[None]:
    """Nothing but PATH, the model and the variables a test sets; no .env in the working directory. The
    environment is restored whole afterwards."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update({"PATH": saved["PATH"], "HGR_MODEL_PATH": model_path})
    monkeypatch.chdir(tmp_path)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def config_check(capsys: pytest.CaptureFixture[str], service: str = "up") -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["config", "--check", "--service", service])
    out, err = capsys.readouterr()
    return code, out, err


def start_up(service: str) -> str:
    """What `hgr <service>`'s start-up (hgr.serve.run) refuses with; it must refuse before building the app."""
    def create_app(settings: Settings) -> Starlette:
        raise AssertionError("start-up passed its checks")

    with pytest.raises(ConfigError) as err:
        run([], service=service, description="", create_app=create_app, banner=lambda s, h, p: "")
    return err.value.message


@pytest.mark.parametrize("env, expected", [
    ({"API_KEYS": "foo"}, ["API_KEYS entry 1: expected name:key"]),
    ({"METRICS_PORT": "8000"}, ["METRICS_PORT=8000 is the server's own port"]),
    ({"HGR_MODEL_PATH": "/nonexistent.task"}, ["HGR_MODEL_PATH='/nonexistent.task': no such file"]),
    ({"MQTT_CA_FILE": "/nonexistent.pem"}, ["MQTT_CA_FILE='/nonexistent.pem': no such file"]),
    ({"WEB_DIR": "/nonexistent"}, ["WEB_DIR='/nonexistent': no such directory"]),
    ({"NUM_HANDS": "9", "LOG_LEVEL": "verbose"}, ["2 configuration problems", "NUM_HANDS='9': must be ≥ 1 and ≤ 4",
                                                 "LOG_LEVEL='verbose': expected one of"]),
])
@pytest.mark.usefixtures("clean_env")
def test_the_issues_defects_are_reported(env: dict[str, str], expected: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Each said "configuration OK" before (issue #22); the last named only LOG_LEVEL."""
    os.environ.update(env)
    code, out, err = config_check(capsys)
    assert code == 2 and "configuration OK" not in out
    for fragment in expected:
        assert fragment in err, err


@pytest.mark.usefixtures("clean_env")
def test_a_good_configuration_is_ok(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("ops:s3cret\n")
    os.environ.update({"API_KEYS": f"@{keys}", "AUTH_ENABLED": "true", "METRICS_PORT": "9100",
                       "WEB_DIR": str(tmp_path), "MQTT_CA_FILE": str(keys)})
    code, out, err = config_check(capsys)
    assert (code, out, err) == (0, "configuration OK\n", "")


def test_an_unreadable_file_is_named(model_path: str) -> None:
    # Root reads every file, so as root (CI) the check runs as `hgr config --check` under the unprivileged
    # user nobody (setpriv): the same start-up check, the same message, a real Permission denied.
    folder = Path(tempfile.mkdtemp(prefix="hgr-unreadable-"))
    try:
        folder.chmod(0o755)
        secret = folder / "ca.pem"
        secret.write_text("x")
        secret.chmod(0)
        # The model where user nobody may read it (a developer's may sit under /root/.cache).
        model_path = str(shutil.copy(model_path, folder / "hand_landmarker.task"))
        expected = f"MQTT_CA_FILE={str(secret)!r}: cannot be read (Permission denied)"
        if os.geteuid() != 0:
            report = check_startup("hub", {"MQTT_CA_FILE": str(secret), "HGR_MODEL_PATH": model_path}, env_file=None)
            assert report.errors == [expected]
            return
        need(shutil.which("setpriv") is not None, "setpriv (util-linux)")
        env = {"PATH": os.environ["PATH"], "MQTT_CA_FILE": str(secret), "HGR_MODEL_PATH": model_path}
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                               "hgr", "config", "--check", "--service", "hub"], check=False, capture_output=True,
                              text=True, cwd=folder, env=env, timeout=120)
        assert (done.returncode, done.stderr.strip()) == (2, f"hgr: {expected}"), done.stderr
    finally:
        shutil.rmtree(folder)


def test_a_file_in_a_folder_that_cannot_be_entered_is_named_not_a_traceback(model_path: str) -> None:
    # The same start-up check as user nobody, with the model under a folder only root may enter (as
    # /root/.cache is): one line naming the variable, exit 2, not a PermissionError traceback.
    folder = Path(tempfile.mkdtemp(prefix="hgr-closed-"))
    try:
        model = Path(shutil.copy(model_path, folder / "hand_landmarker.task"))
        expected = f"HGR_MODEL_PATH={str(model)!r}: cannot be read (Permission denied)"
        if os.geteuid() != 0:  # not root: a folder its owner may not enter either
            folder.chmod(0)
            try:
                assert check_startup("hub", {"HGR_MODEL_PATH": str(model)}, env_file=None).errors == [expected]
            finally:
                folder.chmod(0o700)
            return
        folder.chmod(0o700)  # root: only root may enter; the check runs as user nobody
        need(shutil.which("setpriv") is not None, "setpriv (util-linux)")
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                               "hgr", "config", "--check", "--service", "hub"], check=False, capture_output=True,
                              text=True, cwd="/", env={"PATH": os.environ["PATH"], "HGR_MODEL_PATH": str(model)},
                              timeout=120)
        assert (done.returncode, done.stderr.strip()) == (2, f"hgr: {expected}"), done.stderr
    finally:
        shutil.rmtree(folder)


def test_a_directory_where_a_file_belongs_is_named(tmp_path: Path, model_path: str) -> None:
    report = check_startup("edge", {"MQTT_CLIENT_CERT": str(tmp_path), "WEB_DIR": model_path,
                                    "HGR_MODEL_PATH": model_path}, env_file=None)
    assert report.errors == [f"MQTT_CLIENT_CERT={str(tmp_path)!r}: a directory, not a file",
                             f"WEB_DIR={model_path!r}: not a directory"]


def test_a_file_that_is_no_model_is_named(tmp_path: Path) -> None:
    fake = tmp_path / "model.task"
    fake.write_text("not a zip")
    report = check_startup("up", {"HGR_MODEL_PATH": str(fake)}, env_file=None)
    assert len(report.errors) == 1 and report.errors[0].startswith(f"HGR_MODEL_PATH={str(fake)!r}: not a model bundle")


def test_no_model_yet_is_a_warning_not_an_error(tmp_path: Path) -> None:
    report = check_startup("up", {"HGR_MODEL_PATH": "", "HGR_MODEL_CACHE_DIR": str(tmp_path)}, env_file=None)
    assert report.errors == [] and len(report.warnings) == 1
    assert "start-up will download or build one" in report.warnings[0]


def test_the_fallback_engine_without_mediapipe_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the images leave mediapipe out by default: STREAM_PIPELINE=mediapipe there is a start-up error that
    # says how to build an image with it, not a worker's ModuleNotFoundError
    env = {"HGR_MODEL_PATH": "", "HGR_MODEL_CACHE_DIR": str(tmp_path)}
    assert check_startup("edge", {**env, "STREAM_PIPELINE": "mediapipe"}, env_file=None).errors == []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mediapipe" else real(name, *a))
    (problem,) = check_startup("edge", {**env, "STREAM_PIPELINE": "mediapipe"}, env_file=None).errors
    assert problem.startswith("STREAM_PIPELINE=mediapipe") and "HGR_FALLBACK_ENGINE=true" in problem
    assert check_startup("edge", {**env, "STREAM_PIPELINE": "litert"}, env_file=None).errors == []


def test_the_metrics_port_is_checked_against_the_services_own_port() -> None:
    env = {"METRICS_PORT": "8001"}  # EDGE_PORT's default: fine for `hgr hub`, a clash for `hgr edge`
    assert check_startup("hub", env, env_file=None).errors == []
    (error,) = check_startup("edge", env, env_file=None).errors
    assert error.startswith("METRICS_PORT=8001 is the server's own port (EDGE_PORT of `hgr edge`)")
    assert check_startup("hub", env, env_file=None, port=8001).errors  # `hgr hub --port 8001`
    assert check_startup("up", {"METRICS_PORT": "x", "PORT": "x"}, env_file=None).errors == [
        "PORT='x': expected an integer", "METRICS_PORT='x': expected an integer"]  # no clash between defaults


SETTINGS = [f for f in dataclasses.fields(Settings) if bad_value(f) is not None]


@pytest.mark.parametrize("f", SETTINGS, ids=[f.metadata["env"] for f in SETTINGS])
@pytest.mark.usefixtures("clean_env")
def test_config_check_and_start_up_agree_on_every_setting(f: dataclasses.Field[object],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Every setting with a bad value: `hgr config --check` exits 2 naming it, and each server's start-up
    refuses with exactly the same message before building anything."""
    env = f.metadata["env"]
    os.environ[env] = str(bad_value(f))
    for service in ("up", "hub", "edge"):
        code, out, err = config_check(capsys, service)
        assert code == 2 and out == "", (service, out, err)
        assert env in err, err
        assert err == f"hgr: {start_up(service)}\n"


@pytest.mark.usefixtures("clean_env")
def test_cross_checks_agree_too(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    os.environ.update({"AUTH_ENABLED": "true", "REDIS_CLUSTER": "true", "REDIS_SENTINELS": "s1:26379",
                       "API_KEYS": "", "METRICS_PORT": "8000"})
    code, _, err = config_check(capsys)
    assert code == 2 and err == f"hgr: {start_up('up')}\n"
    assert "3 configuration problems" in err and "AUTH_ENABLED=true needs API_KEYS" in err
    assert "REDIS_CLUSTER=true needs" in err and "METRICS_PORT=8000" in err


def test_a_server_with_bad_settings_names_them_all_and_starts_nothing(tmp_path: Path, model_path: str) -> None:
    """The real command: one message, exit 2, no banner, no traceback."""
    env = {"PATH": os.environ["PATH"], "HGR_MODEL_PATH": model_path, "NUM_HANDS": "9", "LOG_LEVEL": "verbose",
           "WEB_DIR": "/nonexistent"}
    proc = subprocess.Popen([sys.executable, "-m", "hgr", "up", "--port", "0"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 2 and out == ""
    assert err.startswith("hgr: 3 configuration problems:\n") and "Traceback" not in err
    for fragment in ("NUM_HANDS='9'", "LOG_LEVEL='verbose'", "WEB_DIR='/nonexistent'"):
        assert fragment in err


def test_start_up_logs_the_ignored_service_link(tmp_path: Path, model_path: str) -> None:
    """A real `hgr edge` under Kubernetes' service links: it starts, and its log says what it ignored."""
    from tests.support import free_port, stop_process, wait_ready

    port, log = free_port(), tmp_path / "edge.log"
    env = {"PATH": os.environ["PATH"], "HGR_MODEL_PATH": model_path, "WORKERS": "1", "LOG_FORMAT": "json",
           "REDIS_PORT": "tcp://10.0.0.5:6379", "EDGE_PORT": "tcp://10.0.0.6:8001"}
    proc = subprocess.Popen([sys.executable, "-m", "hgr", "edge", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
    finally:
        stop_process(proc, 60, signal.SIGINT)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    warnings = [line["msg"] for line in lines if line["level"] == "warning" and "service link" in line["msg"]]
    assert [w.split("=", 1)[0] for w in warnings] == ["configuration: EDGE_PORT", "configuration: REDIS_PORT"], lines


def start(service: str, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run `hgr <service> ...` expected to fail at start-up: (exit status, stdout, stderr)."""
    full = {"PATH": os.environ["PATH"], "WORKERS": "1", "LOG_FORMAT": "json", **env}
    proc = subprocess.Popen([sys.executable, "-m", "hgr", service, *argv], cwd=cwd, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # it started after all: a failure, not a hang
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another server listens on."""
    from tests.support import free_port

    with socket.socket() as other:
        other.bind(("127.0.0.1", free_port()))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.parametrize("service", ["up", "hub", "edge"])
def test_a_busy_port_is_one_line_and_exit_3_before_anything_starts(service: str, busy_port: int, tmp_path: Path,
                                                                    model_path: str) -> None:
    """Issue #22: `PORT=<busy> hgr up` printed the demo URL, started the workers, then logged "address already
    in use" and exited 3. Now: no banner (stdout empty), no worker (nothing logged: the pool logs "starting"),
    one line."""
    code, out, err = start(service, ["--host", "127.0.0.1", "--port", str(busy_port)],
                           {"HGR_MODEL_PATH": model_path}, tmp_path)
    assert (code, out, err) == (3, "", (f"hgr: cannot listen on 127.0.0.1:{busy_port} (--port): "
                                       "Address already in use\n"))


def test_a_busy_port_from_the_environment_names_the_setting(busy_port: int, tmp_path: Path, model_path: str) -> None:
    code, out, err = start("edge", [], {"HGR_MODEL_PATH": model_path, "HOST": "127.0.0.1",
                                        "EDGE_PORT": str(busy_port)}, tmp_path)
    assert (code, out, err) == (3, "", (f"hgr: cannot listen on 127.0.0.1:{busy_port} (--port or EDGE_PORT): "
                                       "Address already in use\n"))


def test_a_busy_metrics_port_is_one_line_and_exit_3(busy_port: int, tmp_path: Path, model_path: str) -> None:
    from tests.support import free_port

    code, out, err = start("hub", ["--host", "127.0.0.1", "--port", str(free_port())],
                           {"HGR_MODEL_PATH": model_path, "METRICS_PORT": str(busy_port)}, tmp_path)
    assert (code, out, err) == (3, "", (f"hgr: cannot listen on 127.0.0.1:{busy_port} (METRICS_PORT): "
                                       "Address already in use\n"))


@pytest.mark.service
def test_no_model_to_be_had_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """No HGR_MODEL_PATH, an empty cache, and both network sources refusing (a closed local port)."""
    from tests.support import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    code, out, err = start("hub", ["--host", "127.0.0.1", "--port", str(free_port())], {
        "HGR_MODEL_PATH": "", "HGR_MODEL_CACHE_DIR": str(tmp_path / "cache"), "HGR_MODEL_URL": f"{closed}/m.task",
        "HGR_MODEL_INDEX_URL": f"{closed}/simple", "LOG_LEVEL": "error"}, tmp_path)
    assert code == 2 and out == "" and "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith("hgr: no hand landmarker model found. Tried:") and f"download {closed}/m.task" in line


def test_an_unreadable_file_is_one_line_and_exit_2(tmp_path: Path, model_path: str) -> None:
    code, out, err = start("edge", ["--port", "0"], {"HGR_MODEL_PATH": model_path, "MQTT_CA_FILE": str(tmp_path)},
                           tmp_path)
    assert (code, out, err) == (2, "", f"hgr: MQTT_CA_FILE={str(tmp_path)!r}: a directory, not a file\n")
