"""What a deployed server lets out (issue 20, "What leaks"), against real processes: `hgr up` with a
password-protected Redis, `hgr hub` with text logs and a real broker.

- row 12: a password holding "@" is gone, whole, from the keyless /status and from the logs;
- credentials are scrubbed from the log as the application decodes them (``?%74oken=`` is ``?token=``);
- row 10: random paths (404 from the web demo's static mount, 405 for a POST) add no route label;
- a forged `X-Forwarded-For` is one bounded rate-limit bucket, not a Redis key of its own;
- row 13: with ``LOG_FORMAT=text``, a topic holding a line break cannot forge a log line. Mosquitto
  refuses C0 and C1 control characters in a topic (the publisher is disconnected: "malformed packet"),
  but lets U+2028 LINE SEPARATOR through, which ``str.splitlines`` and many log viewers break lines on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import redis as redis_lib
from paho.mqtt.enums import CallbackAPIVersion

from hgr.loadtest.ws_stream import open_stream
from tests.support import free_port, http_get, need, poll, redis_argv, start_server, stop_process, wait_ready

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "p@ssw0rd"  # the example: masking up to the first "@" left "ssw0rd@…" behind
KEY = "alice-leak-test-key-7f3e9a"


def _start(command: str, port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, "WORKERS": "1", "REDIS_URL": "", "REDIS_ENABLED": "false", "MQTT_URL": "", **env}
    return subprocess.Popen([sys.executable, "-m", "hgr", command, "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=full, stdout=log.open("w"), stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`hgr up` on a private Redis whose password holds "@", JSON logs, auth on."""
    need(bool(shutil.which("redis-server")), "redis-server is not installed")
    redis_port, port = free_port(), free_port()
    redis = start_server([*redis_argv(redis_port), "--requirepass", PASSWORD], redis_port)
    log = tmp_path_factory.mktemp("leaks") / "up.log"
    proc = _start("up", port, log, REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{redis_port}/0", LOG_FORMAT="json",
                  AUTH_ENABLED="true", API_KEYS=f"alice:{KEY}", EDGE_ID="leaks-test")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base, log
    finally:
        stop_process(proc, 60, signal.SIGINT)
        redis.kill()
        redis.wait()


def test_a_redis_password_holding_an_at_sign_is_gone_from_status_and_logs(up: tuple[str, Path]) -> None:
    base, log = up
    status, body = http_get(base + "/status", headers={"X-API-Key": KEY})  # in full to fleet:read (alice's default)
    assert status == 200
    redis = json.loads(body)["redis"]
    assert redis["up"] is True, redis  # the password really is the server's: the hub is connected
    assert redis["url"].startswith("redis://***@127.0.0.1:"), redis
    for leaked in ("ssw0rd", PASSWORD):
        assert leaked not in body.decode()
        assert leaked not in log.read_text()
    assert '"redis": "redis://***@127.0.0.1:' in log.read_text()  # the masked URL is what the log shows


async def test_a_percent_encoded_token_is_scrubbed_from_the_log(up: tuple[str, Path]) -> None:
    base, log = up
    # %74 is "t": Starlette decodes the query, so the edge takes this as ?token= and accepts the key.
    ws, hello = await open_stream(base.replace("http", "ws") + f"/ws?%74oken={KEY}")
    try:
        assert hello["type"] == "hello"
    finally:
        await ws.close()
    accepted = poll(lambda: [line for line in log.read_text().splitlines() if "[accepted]" in line], 30,
                    "uvicorn's log line for the accepted WebSocket")
    assert "token=***" in accepted[-1], accepted[-1]
    assert KEY not in log.read_text()


def test_text_logs_escape_a_line_break_in_a_topic(tmp_path: Path, mqtt_url: str) -> None:
    """Row 13: an invalid metrics message on a topic whose edge id holds a line break and a fake log
    line. The hub logs the topic (as "invalid"): the fake line stays inside the hub's own line."""
    port, prefix = free_port(), f"test-leaks-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "hub.log"
    proc = _start("hub", port, log, MQTT_URL=mqtt_url, MQTT_TOPIC_PREFIX=prefix, LOG_FORMAT="text",
                  API_KEYS=f"ops:{KEY}", MQTT_SHARE_GROUP=f"g{uuid.uuid4().hex[:8]}", MQTT_CLIENT_ID=f"hub-{prefix}")
    forged = "2026-01-01 00:00:00,000 WARNING hgr.auth: FORGED admin login"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, 240)
        client.connect("127.0.0.1", int(mqtt_url.rsplit(":", 1)[1]))
        client.loop_start()

        def rejected() -> bool:
            # published again until the hub has subscribed and counted it (QoS 1: the broker has it)
            client.publish(f"{prefix}/edges/x\u2028{forged}/metrics", b"{}", qos=1).wait_for_publish(10)
            status = json.loads(http_get(base + "/status", headers={"X-API-Key": KEY})[1])  # the full one
            return bool(status["fleet"]["ingested"].get("invalid"))

        poll(rejected, 60, "the hub to reject the message", interval=0.5)
        lines = log.read_text().splitlines()
        assert not [line for line in lines if line.startswith(forged[:30])], lines
        logged = [line for line in lines if "FORGED" in line]
        assert logged and all("invalid metrics message on" in line and "\\u2028" + forged in line for line in logged)
    finally:
        client.loop_stop()
        client.disconnect()
        stop_process(proc, 60)


def _route_labels(base: str) -> set[str]:
    status, body = http_get(base + "/metrics")
    assert status == 200
    return set(re.findall(r'^hand_gesture_requests_total\{[^}]*route="([^"]*)"', body.decode(), re.MULTILINE))


async def test_random_paths_add_no_route_label(up: tuple[str, Path]) -> None:
    """Row 10: `hgr up` made each 404 path a label of its own (its web demo is mounted at "/")."""
    base, _ = up
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        assert (await client.get("/no-such-page-warm-up")).status_code == 404
        assert (await client.get("/")).status_code == 200  # the demo itself is still served and counted
        # A request is counted just after its answer is sent, so wait for these two and for the scrape
        # itself (route "/metrics") to be counted before taking the labels.
        before = poll(lambda: (labels := _route_labels(base)) >= {"/{path}", "unmatched", "/metrics"} and labels,
                      30, "the first requests counted")
        paths = [f"/probe-{uuid.uuid4().hex}" for _ in range(300)]
        for path in paths:
            assert (await client.get(path)).status_code == 404
            assert (await client.post(path + "/x")).status_code in (404, 405)
    after = _route_labels(base)
    assert after == before, sorted(after - before)[:5]
    assert not [label for label in after if "probe-" in label]
    assert "unmatched" in after and "/{path}" in after


def test_a_forged_forwarded_address_is_one_bounded_bucket(tmp_path: Path, redis_url: str) -> None:
    """`X-Forwarded-For` from a trusted proxy (loopback, the default) that is not an IP address: any
    string, 5 000 characters of it, became a Redis key of its own, so rotating it dodged the per-IP
    limit. Now every such caller is the one bucket `ip:invalid`."""
    port, prefix = free_port(), f"hgr-test-xff-{uuid.uuid4().hex[:8]}:"
    proc = _start("hub", port, tmp_path / "hub.log", REDIS_URL=redis_url, REDIS_KEY_PREFIX=prefix,
                  RATE_LIMIT_REQUESTS="3", RATE_LIMIT_WINDOW="600")
    base = f"http://127.0.0.1:{port}"
    client = redis_lib.Redis.from_url(redis_url)
    try:
        wait_ready(base, proc, 240)
        statuses = []
        with httpx.Client(base_url=base, timeout=30) as http:
            for i in range(5):
                forged = f"{i}" + "x" * 5000
                statuses.append(http.post("/detect-fingers", json={}, headers={"X-Forwarded-For": forged}).status_code)
        keys = [key.decode() for key in client.scan_iter(f"{prefix}*")]
        assert statuses[:3] != [429] * 3 and statuses[3:] == [429, 429], statuses
        assert keys and max(len(key) for key in keys) < 200, [key[:80] for key in keys]
        assert any(key.endswith("ip:invalid") for key in keys), keys
    finally:
        stop_process(proc, 60)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()
