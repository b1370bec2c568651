"""The images as shipped: Dockerfile.edge and Dockerfile.hub built unchanged from the lock, then run.

The edge container answers a frame over WebSocket; the hub container refuses a request without a key,
answers one with a key and writes to Redis; an edge container's birth and metrics reach the hub's
/fleet over MQTT; every line either writes is a JSON object (LOG_FORMAT=json); neither image adds more
than IMAGE_BUDGET_MB to its base. Containers share the host's network (all traffic on 127.0.0.1) and use
its Redis and Mosquitto. Where no registry is reachable, `deploy/dev/stand-in-bases.sh` makes the pinned
base images from Debian's packages first (`.ci/run` does; docs/deployment.md "Building the images").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from hgr.edge import protocol
from hgr.loadtest.ws_stream import open_stream
from tests.hub_support import b64
from tests.support import eventually, free_port, need, wait_ready

ROOT = Path(__file__).resolve().parent.parent
BASE = "python:3.11.11-slim-bookworm"  # ARG PYTHON_IMAGE of both Dockerfiles
# What an image may add on top of its base (docs/deployment.md "Image size"): the edge carries PyAV for
# its cameras, neither carries mediapipe (the fallback engine) unless built with HGR_FALLBACK_ENGINE=true,
# nor openvino (the bf16 runtime) unless built with HGR_OPENVINO=true; deploy/slim-venv.sh strips the venv's shared
# libraries and drops LiteRT's WebGPU accelerator and ahead-of-time tooling (401 MB and 321 MB measured, a few MB
# of slack here; issue 24 asks for at most 450). The suite builds the default images only.
IMAGE_BUDGET_MB = {"edge": 407, "hub": 327}
BUILD_TIMEOUT_S = 1800
# The module's fixture builds both images inside its first test's setup: the suite's per-test timeout
# (pyproject) would cut a cold build short.
pytestmark = pytest.mark.timeout(2 * BUILD_TIMEOUT_S + 600)
# What the Dockerfiles copy (.dockerignore's whitelist), so the build context holds nothing else.
CONTEXT = ("requirements.txt", "pyproject.toml", "README.md", "common", "hgr", "edge", "hub", "loadtest", "web",
           "deploy/model", "deploy/slim-venv.sh", "Dockerfile.edge", "Dockerfile.hub", ".dockerignore")
KEY = "smoke-" + uuid.uuid4().hex


def _docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], check=False, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} … failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout


def _engine_ok() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], check=False, capture_output=True, timeout=60).returncode == 0


def _context(into: Path) -> Path:
    for name in CONTEXT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, into / name)
    # The model: the developers' and CI's shared bundle when there is one (the image verifies it), else
    # the build fetches it as a user's build does (`hgr model fetch`).
    model = os.environ.get("HGR_MODEL_PATH", "")
    if model and Path(model).is_file():
        shutil.copy2(model, into / "deploy" / "model" / "hand_landmarker.task")
    return into


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    need(_engine_ok(), "a running Docker engine (apt-get install docker.io; dockerd)")
    need(bool(_docker("images", "-q", BASE, check=False).strip()),
         f"the base image {BASE} (pulled, or made by deploy/dev/stand-in-bases.sh where no registry is reachable)")
    context = _context(tmp_path_factory.mktemp("context"))
    tags = {}
    for kind in ("edge", "hub"):
        tag = f"hgr-{kind}:smoke"
        _docker("build", "--network", "host", "-f", str(context / f"Dockerfile.{kind}"), "-t", tag, str(context),
                timeout=BUILD_TIMEOUT_S)
        tags[kind] = tag
    return tags


@contextlib.contextmanager
def container(image: str, logs: dict[str, str], **env: str) -> Iterator[str]:
    """A detached container on the host's network; its whole log lands in ``logs`` when it is removed."""
    name = f"hgr-smoke-{uuid.uuid4().hex[:8]}"
    args = ["run", "-d", "--name", name, "--network", "host", "-e", "HOST=127.0.0.1", "-e", "WORKERS=1"]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    _docker(*args, image)
    try:
        yield name
    finally:
        _docker("stop", "-t", "20", name, check=False, timeout=60)
        done = subprocess.run(["docker", "logs", name], check=False, capture_output=True, text=True, timeout=60)
        logs[name] = done.stdout + done.stderr
        _docker("rm", "-f", name, check=False)


def _not_json(text: str) -> list[str]:
    bad = []
    for line in text.splitlines():
        try:
            if not isinstance(json.loads(line), dict):
                bad.append(line)
        except ValueError:
            bad.append(line)
    return bad


async def _counts_over_websocket(url: str, photos: list[tuple[Path, int]], **headers: str) -> list[tuple[int, int]]:
    """(label, fingers of the first hand or -1) for each photo, each the first frame of a stream of its own
    (a new scene, as a still is)."""
    counts = []
    for path, label in photos:
        ws, hello = await open_stream(url, headers=headers or None)
        try:
            assert hello["type"] == "hello"
            await ws.send(protocol.encode_frame(1, path.read_bytes(), ts=1))
            result = protocol.decode_server_message(await asyncio.wait_for(ws.recv(), 60))
        finally:
            await ws.close()
        assert result["type"] == "result" and result["seq"] == 1, result
        counts.append((label, result["hands"][0]["fingers"] if result["hands"] else -1))
    return counts


def _mostly_right(counts: list[tuple[int, int]]) -> bool:
    # The photos' labels, read as the edge reads them anywhere (a few scenes are hard for every path).
    return sum(label == fingers for label, fingers in counts) >= len(counts) - 2


async def test_the_edge_container_answers_frames_over_websocket(
        images: dict[str, str], hand_photos: list[tuple[Path, int]]) -> None:
    port, logs = free_port(), dict[str, str]()
    with container(images["edge"], logs, EDGE_PORT=str(port), EDGE_ID="smoke-edge", MQTT_URL=""):
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", None, 240)
        counts = await _counts_over_websocket(f"ws://127.0.0.1:{port}/ws", hand_photos[:8])
    assert _mostly_right(counts), counts
    [log] = logs.values()
    assert _not_json(log) == [], "LOG_FORMAT=json: every line of `docker logs` is a JSON object"


async def test_the_hub_container_serves_rest_with_keys_writes_redis_and_sees_an_edge_over_mqtt(
        images: dict[str, str], hand_photos: list[tuple[Path, int]], redis_url: str, mqtt_url: str) -> None:
    hub_port, edge_port, logs = free_port(), free_port(), dict[str, str]()
    prefix, topics = f"smoke{uuid.uuid4().hex[:6]}:", f"smoke/{uuid.uuid4().hex[:6]}"
    shared = {"MQTT_URL": mqtt_url, "MQTT_TOPIC_PREFIX": topics, "METRICS_INTERVAL": "1"}
    with container(images["hub"], logs, PORT=str(hub_port), AUTH_ENABLED="true", API_KEYS=f"smoke:{KEY}",
                   REDIS_ENABLED="true", REDIS_URL=redis_url, REDIS_KEY_PREFIX=prefix, **shared), \
         container(images["edge"], logs, EDGE_PORT=str(edge_port), EDGE_ID="smoke-fleet-edge", **shared):
        base = f"http://127.0.0.1:{hub_port}"
        await asyncio.to_thread(wait_ready, base, None, 240)
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            anonymous = await client.post("/detect-fingers", json={"image_base64": b64(hand_photos[0][0].read_bytes())})
            assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized", anonymous.text
            counts = []
            for path, label in hand_photos[:8]:
                answer = await client.post("/detect-fingers", json={"image_base64": b64(path.read_bytes())},
                                           headers={"X-API-Key": KEY})
                assert answer.status_code == 200, answer.text
                hands = answer.json()["hands"]
                counts.append((label, hands[0]["fingers"] if hands else -1))
            assert _mostly_right(counts), counts
            written = redis.Redis.from_url(redis_url).keys(f"{prefix}*")
            assert written, "the hub container keeps its cache and rate limits in Redis"

            async def edge_reported() -> dict[str, Any] | None:
                r = await client.get("/fleet/edges/smoke-fleet-edge", headers={"X-API-Key": KEY})
                edge: dict[str, Any] = r.json() if r.status_code == 200 else {}
                # online: its birth arrived; workers: from its periodic metrics (fleet_logic.edge_view)
                return edge if edge.get("status") == "online" and edge.get("workers") else None

            edge = await eventually(edge_reported, 120, "the edge container's birth and metrics on the hub's /fleet")
            assert edge["version"]
    for name, log in logs.items():
        assert _not_json(log) == [], f"{name}: LOG_FORMAT=json, yet lines that are not JSON"


def test_each_image_adds_at_most_its_budget_to_the_base(images: dict[str, str]) -> None:
    base = int(_docker("image", "inspect", "-f", "{{.Size}}", BASE))
    added = {kind: (int(_docker("image", "inspect", "-f", "{{.Size}}", tag)) - base) / 1e6
             for kind, tag in images.items()}
    assert all(mb <= IMAGE_BUDGET_MB[kind] for kind, mb in added.items()), added


def _compose_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


@pytest.mark.parametrize(("compose", "env"), [
    ("docker-compose.edge.yml", {"EDGE_ID": "edge-1", "MQTT_URL": "mqtts://hub.example.com:8883", "API_KEYS": "c:k"}),
    ("docker-compose.hub.yml", {"PUBLIC_HOSTNAME": "hub.example.com", "REDIS_PASSWORD": "p",
                                "REDIS_LIMITS_PASSWORD": "p", "MQTT_HUB_PASSWORD": "p",
                                "GRAFANA_ADMIN_PASSWORD": "p"}),
], ids=["edge", "hub"])
def test_a_compose_client_that_installs_here_reads_the_compose_files(compose: str, env: dict[str, str]) -> None:
    need(shutil.which("docker-compose") is not None, "Debian's docker-compose (apt-get install docker-compose)")
    done = subprocess.run(["docker-compose", "-f", compose, "config"], check=False, cwd=ROOT, env=_compose_env(**env),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "services:" in done.stdout and "Dockerfile." in done.stdout


async def test_the_edge_compose_file_runs_as_written(images: dict[str, str], tmp_path: Path,
                                                     hand_photos: list[tuple[Path, int]]) -> None:
    # docker-compose.edge.yml unchanged: its read-only root, tmpfs, dropped capabilities and published port.
    # The image is the one built above under the compose file's tag (no second build). Its broker is
    # left unreachable on purpose: the edge serves frames without its uplink (the outbox waits).
    need(shutil.which("docker-compose") is not None, "Debian's docker-compose (apt-get install docker-compose)")
    tag = next(line.split("image:", 1)[1].strip() for line in (ROOT / "docker-compose.edge.yml").read_text()
               .splitlines() if line.strip().startswith("image: hgr-edge"))
    _docker("tag", images["edge"], tag)
    port, project = free_port(), f"hgrsmoke{uuid.uuid4().hex[:6]}"
    env = _compose_env(EDGE_ID="compose-edge", MQTT_URL="mqtt://127.0.0.1:1", API_KEYS=f"cam:{KEY}",
                       EDGE_PUBLISH=f"127.0.0.1:{port}", EDGE_WORKERS="1")
    compose = ["docker-compose", "-p", project, "-f", "docker-compose.edge.yml"]

    def run(*args: str, timeout: float = 300) -> str:
        done = subprocess.run([*compose, *args], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, done.stderr[-4000:]
        return done.stdout

    run("up", "-d", "--no-build", "edge")
    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", None, 240)
        counts = await _counts_over_websocket(f"ws://127.0.0.1:{port}/ws", hand_photos[:8], **{"X-API-Key": KEY})
        assert _mostly_right(counts), counts
        logs = run("logs", "--no-color", "edge")  # each line "<container> | <line>"
        lines = [line.split("|", 1)[1].strip() for line in logs.splitlines() if "|" in line]
        assert lines and _not_json("\n".join(lines)) == []
    finally:
        run("down", "-v", "--remove-orphans", timeout=120)


def test_the_hub_image_carries_no_camera_decoder(images: dict[str, str]) -> None:
    # PyAV is the edge's (CAMERAS); the hub image leaves it out and still imports everything it runs.
    script = "import importlib.util, hgr.hub.app, hgr.servers; print(importlib.util.find_spec('av') is None)"
    done = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python", images["hub"], "-c", script],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr


# What the default images leave out, and the setting that asks for it: (module, environment, build argument).
LEFT_OUT = {
    # Stills and streams run on LiteRT; mediapipe (and matplotlib, fontTools, …) is the fallback engine.
    "fallback": ("mediapipe", "STREAM_PIPELINE=mediapipe", "HGR_FALLBACK_ENGINE=true"),
    # OpenVINO runs the hand models in bf16, worth its ~180 MB only on CPUs that have bf16.
    "openvino": ("openvino", "INFERENCE_RUNTIME=openvino", "HGR_OPENVINO=true"),
}


@pytest.mark.parametrize("kind", ["edge", "hub"])
@pytest.mark.parametrize("what", sorted(LEFT_OUT))
def test_the_images_leave_the_optional_engines_out_and_say_so(images: dict[str, str], kind: str, what: str) -> None:
    # Not in the image, and asking for it is a start-up error that names the build argument that brings it,
    # not a worker's traceback.
    module, setting, build_arg = LEFT_OUT[what]
    script = f"import importlib.util, hgr.servers; print(importlib.util.find_spec({module!r}) is None)"
    done = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python", images[kind], "-c", script],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
    done = subprocess.run(["docker", "run", "--rm", "-e", setting, "--entrypoint", "hgr",
                           images[kind], "config", "--check", "--service", kind],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and build_arg in done.stdout + done.stderr, done
