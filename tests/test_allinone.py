"""`hgr up`, the README's run command: hub + edge + web demo on one port, nothing else installed.

A real process with the real model. Checks that one port serves the demo, REST, the WebSocket and
the fleet view (fed by the in-process bus), that the log says which stand-ins are in use, and that
Ctrl-C drains: the streaming client gets a close frame, the edge publishes `offline` to a real broker,
and no worker process outlives the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from websockets.exceptions import ConnectionClosed

from hgr.edge import protocol
from hgr.loadtest.ws_stream import open_stream
from tests.support import alive, children, eventually, free_port, http_get, stop_process, wait_ready

pytestmark = pytest.mark.service  # starts processes (servers, tools) or needs a broker

VIEWER_KEY = "viewer-key-0123456789"  # the fleet views need fleet:read (docs/security.md)

ROOT = Path(__file__).resolve().parent.parent


def _start_up(port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, "WORKERS": "1", "METRICS_INTERVAL": "0.5", "LOG_FORMAT": "json", **env}
    return subprocess.Popen([sys.executable, "-m", "hgr", "up", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=full, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    log = tmp_path_factory.mktemp("up") / "up.log"
    env = {k: "" for k in ("MQTT_URL", "REDIS_URL")} | {"REDIS_ENABLED": "false", "EDGE_ID": "allinone-test",
                                                         "API_KEYS": f"viewer:{VIEWER_KEY}:fleet:read"}
    proc = _start_up(port, log, **env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base, proc, log
    finally:
        stop_process(proc, 60, signal.SIGINT)


def test_prints_the_url_and_says_which_stand_ins_it_uses(up: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    base, _, log = up
    text = log.read_text()
    assert f"web demo at {base}/" in text
    starting = next(json.loads(line) for line in text.splitlines() if '"msg": "starting"' in line)
    assert starting["broker"] == "in-process bus"
    assert starting["redis"].startswith("in-process")


def test_one_port_serves_demo_rest_and_openapi(up: tuple[str, subprocess.Popen[bytes], Path],
                                               hand_photos: list[tuple[Path, int]]) -> None:
    base, _, _ = up
    status, page = http_get(base + "/")
    assert status == 200 and b"<html" in page.lower()
    five = next(p for p, n in hand_photos if n == 5)
    status, body = _post_json(base + "/detect-fingers", {"image_base64": base64.b64encode(five.read_bytes()).decode()})
    assert status == 200 and body["total_fingers"] == 5 and body["cached"] is False
    status, again = _post_json(base + "/detect-fingers", {"image_base64": base64.b64encode(five.read_bytes()).decode()})
    assert again["cached"] is True, "the in-process cache answers a repeated image"
    status, missing = http_get(base + "/no-such-thing")
    assert status == 404 and json.loads(missing)["error"]["code"] == "not_found"
    for post_only in ("/detect-fingers", "/detect-fingers-batch", "/detect-fingers-upload"):
        status, wrong = http_get(base + post_only)  # 405 as on `hgr hub`, not the static mount's 404
        assert status == 405 and json.loads(wrong)["error"]["code"] == "method_not_allowed", post_only
    status, spec = http_get(base + "/openapi.json")
    assert status == 200 and "/detect-fingers" in json.loads(spec)["paths"]


async def test_websocket_frames_show_up_in_the_fleet_view(up: tuple[str, subprocess.Popen[bytes], Path],
                                                          hand_photos: list[tuple[Path, int]]) -> None:
    base, _, _ = up
    two = next(p for p, n in hand_photos if n == 2)
    ws, hello = await open_stream(base.replace("http", "ws") + "/ws")
    assert hello["type"] == "hello"
    try:
        for seq in range(1, 6):
            await ws.send(protocol.encode_frame(seq, two.read_bytes(), ts=1000 + seq))
            msg = protocol.decode_server_message(await asyncio.wait_for(ws.recv(), 60))
            assert msg["type"] == "result" and msg["seq"] == seq and msg["ts"] == 1000 + seq
    finally:
        await ws.close()
    # The edge reports to the hub through the in-process bus, as it would over MQTT.
    def reported() -> dict[str, Any] | None:
        edge = httpx.get(base + "/fleet/edges/allinone-test", headers={"X-API-Key": VIEWER_KEY}, timeout=30).json()
        return edge if edge.get("status") == "online" and edge.get("frames", {}).get("processed", 0) >= 5 else None

    edge = await eventually(reported, 30, "the edge online with its 5 frames at the hub", interval=0.2)
    assert edge["status"] == "online" and edge["frames"]["processed"] >= 5, edge


async def test_ctrl_c_drains_publishes_offline_and_leaves_no_processes(
        tmp_path: Path, mqtt_url: str, hand_photos: list[tuple[Path, int]]) -> None:
    port, prefix = free_port(), f"test-up-{uuid.uuid4().hex[:8]}"
    proc = _start_up(port, tmp_path / "up.log", MQTT_URL=mqtt_url, MQTT_TOPIC_PREFIX=prefix, EDGE_ID="drain",
                     REDIS_URL="", REDIS_ENABLED="false")
    statuses: list[dict[str, Any]] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.on_message = lambda c, u, m: statuses.append(json.loads(m.payload))
    watcher.connect("127.0.0.1", int(mqtt_url.rsplit(":", 1)[1]))
    watcher.subscribe(f"{prefix}/edges/drain/status", qos=1)
    watcher.loop_start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc)
        workers = children(proc.pid)
        assert workers, "the pool runs worker processes"
        frame = next(p for p, n in hand_photos if n == 5).read_bytes()
        ws, _ = await open_stream(base.replace("http", "ws") + "/ws")
        await ws.send(protocol.encode_frame(1, frame, ts=1))
        proc.send_signal(signal.SIGINT)
        messages = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                messages.append(protocol.decode_server_message(await asyncio.wait_for(ws.recv(), 60)))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, "a close frame, going away"
        assert any(m["type"] == "result" and m["seq"] == 1 for m in messages), "the in-flight frame is answered"
        # uvicorn re-raises the signal after its graceful shutdown, as a Ctrl-C'd program should.
        assert proc.wait(60) in (0, -signal.SIGINT)
        assert '"msg": "stopped"' in (tmp_path / "up.log").read_text(), "the lifespan shutdown ran to the end"
        assert not [pid for pid in workers if alive(pid)], "no orphaned worker processes"
        await eventually(lambda: any(s.get("status") == "offline" for s in statuses), 10, "the offline status")
        assert any(s.get("status") == "online" for s in statuses)
        offline = [s for s in statuses if s.get("status") == "offline"]
        assert offline and offline[-1]["reason"] == "shutdown"
    finally:
        if proc.poll() is None:
            proc.kill()
        watcher.loop_stop()
        watcher.disconnect()


async def test_in_json_mode_every_line_is_a_json_object_native_libraries_included(tmp_path: Path) -> None:
    # LiteRT, XNNPACK and MediaPipe write plain text to descriptor 2 from C++ (common/native_logs.py). At
    # LOG_LEVEL=debug their start-up chatter is kept, so it is seen arriving as JSON records of hgr.native.
    port, log = free_port(), tmp_path / "up.log"
    proc = _start_up(port, log, LOG_LEVEL="debug", REDIS_ENABLED="false", MQTT_URL="", REDIS_URL="")
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)

        def records() -> list[dict[str, Any]]:
            return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

        await eventually(lambda: any(r.get("logger") == "hgr.native" and r.get("native") for r in records()), 30,
                   "the workers' native start-up lines, as JSON")
    finally:
        stop_process(proc, 60, signal.SIGINT)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{") or not isinstance(json.loads(line), dict)]
    assert not_json == [] and len(lines) > 10
    native = [json.loads(line) for line in lines if '"hgr.native"' in line]
    assert {r["level"] for r in native} <= {"debug", "info", "warning", "error", "critical"}
    assert any(r.get("source", "").endswith(".cc:75") or "XNNPACK" in r["msg"] for r in native)
