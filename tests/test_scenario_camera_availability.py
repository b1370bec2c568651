"""A real ``hgr edge`` process with a file camera and a named WebSocket stream, on the shipped broker (its
dynamic-security rights, logged in as its edge id), watched by the ``observer`` user: killed with SIGKILL
(its sockets close) or frozen with SIGSTOP (silent: the broker's keepalive gives up on it), each camera's
``…/cameras/{name}/available`` turns ``offline`` through the Will of its own connection
(edge/availability.py) within the keepalive-driven Will time, retained; stopped cleanly, each says
``offline`` itself and disconnects cleanly (the broker's log: no Will was needed), before the edge's
``offline`` status (docs/mqtt.md "Per-camera state")."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hgr.loadtest.procs import alive, worker_pids
from hgr.loadtest.ws_stream import open_stream, running_edge
from tests.camera_support import make_clip
from tests.fleet_helpers import Broker, Watcher
from tests.support import poll

EDGE = "edge-a"  # a user of the shipped broker's password file (tests/fleet_helpers.py)
BASE = f"hgr/v1/edges/{EDGE}"
NAMES = ("demo", "desk")  # the file camera of CAMERAS, the named stream
KEEPALIVE_S = 5  # MQTT_KEEPALIVE's minimum: the broker gives up on a silent connection after 1.5× that
WILL_S = 1.5 * KEEPALIVE_S + 5.0  # + room for a loaded machine (a killed process's sockets close at once)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker", auth=True).start()
    yield broker
    broker.stop()


def _env(broker: Broker, model_path: str, clip: Path) -> dict[str, str]:
    return {"HGR_MODEL_PATH": model_path, "WORKERS": "1", "EDGE_ID": EDGE, "MQTT_URL": broker.url(EDGE),
            "CAMERAS": f"demo=file://{clip}", "CAMERA_FPS": "5", "MQTT_KEEPALIVE": str(KEEPALIVE_S)}


def _clip(tmp_path: Path, hand_photos: list[tuple[Path, int]]) -> Path:
    return make_clip(tmp_path / "demo.mkv", [hand_photos[0][0]], fps=15, frames_each=15, codec="mjpeg")


def _available(watcher: Watcher, value: str, since: float = 0.0) -> bool:
    return all(watcher.last(f"{BASE}/cameras/{name}/available", since) == value for name in NAMES)


async def _online_with_a_named_stream(port: int, watcher: Watcher) -> object:
    """Open the named stream and wait until both cameras are ``online``; returns the open socket."""
    ws, hello = await open_stream(f"ws://127.0.0.1:{port}/ws?camera=desk")
    assert hello["stream"] == "desk"
    await asyncio.to_thread(watcher.wait, lambda: _available(watcher, "online"), 60, "both cameras online")
    return ws


def _reap_workers(pids: list[int]) -> None:
    """A killed edge's worker processes end when their socket to it closes (bounded wait)."""
    poll(lambda: not any(alive(pid) for pid in pids), 30, "the killed edge's workers to exit")


# How the broker learns that the edge is gone, and the line its log writes for each connection then.
GONE = {"killed": (signal.SIGKILL, "closed its connection."),  # the kernel closes a killed process's sockets
        "frozen": (signal.SIGSTOP, "has exceeded timeout, disconnecting.")}  # silent: 1.5 × MQTT_KEEPALIVE


@pytest.mark.parametrize("how", list(GONE))
async def test_a_dead_edge_s_cameras_go_offline_through_their_wills(
        how: str, broker: Broker, model_path: str, hand_photos: list[tuple[Path, int]], tmp_path: Path) -> None:
    sig, log_line = GONE[how]
    watcher = Watcher(broker.port, [f"{BASE}/cameras/+/available", f"{BASE}/status"], user="observer")
    try:
        with (tmp_path / "edge.log").open("wb") as log, \
                running_edge(_env(broker, model_path, _clip(tmp_path, hand_photos)), log_file=log) as (port, proc):
            ws = await _online_with_a_named_stream(port, watcher)
            workers = worker_pids(proc.pid)
            gone_at = time.monotonic()
            proc.send_signal(sig)
            try:
                await asyncio.to_thread(watcher.wait, lambda: _available(watcher, "offline", gone_at), WILL_S,
                                        "each camera's Will")
                took = max(at for at, topic, payload, _ in watcher.messages
                           if topic.endswith("/available") and at >= gone_at) - gone_at
                status = json.loads(await asyncio.to_thread(
                    watcher.wait, lambda: watcher.last(f"{BASE}/status", gone_at), WILL_S, "the edge's own Will"))
                assert status["status"] == "offline" and status["reason"] == "will"
            finally:
                proc.kill()  # a frozen edge ends here (a stopped process still takes SIGKILL)
                await asyncio.to_thread(proc.wait, 30)
            await ws.close()  # type: ignore[attr-defined]
            await asyncio.to_thread(_reap_workers, workers)
    finally:
        watcher.close()
    # Retained: a subscriber that comes afterwards (a home-automation system restarting) reads offline too.
    fresh = Watcher(broker.port, [f"{BASE}/cameras/+/available"], user="observer")
    try:
        await asyncio.to_thread(fresh.wait, lambda: _available(fresh, "offline"), 10, "the retained offline")
        assert all(retained for _, _, _, retained in fresh.messages)
    finally:
        fresh.close()
    assert took <= WILL_S, f"the Wills came {took:.2f}s after the edge was {how}"
    # The broker's account: each camera connection was dropped or went silent, never closed cleanly (the
    # clean stop test below tells these lines apart).
    text = (broker.folder / "data" / "mosquitto.log").read_text()
    for name in NAMES:
        assert f"Client hgr-edge-{EDGE}/cameras/{name} {log_line}" in text


async def test_a_clean_stop_says_offline_itself_before_the_edge_s_status(
        broker: Broker, model_path: str, hand_photos: list[tuple[Path, int]], tmp_path: Path) -> None:
    watcher = Watcher(broker.port, [f"{BASE}/cameras/+/available", f"{BASE}/status"], user="observer")
    try:
        with (tmp_path / "edge.log").open("wb") as log, \
                running_edge(_env(broker, model_path, _clip(tmp_path, hand_photos)), log_file=log) as (port, proc):
            await _online_with_a_named_stream(port, watcher)
            stopped_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 60) in (0, -signal.SIGTERM)
        shutdown = watcher.wait(lambda: next((at for at, topic, payload, _ in watcher.messages if at >= stopped_at
                                              and topic == f"{BASE}/status" and '"shutdown"' in payload), None),
                                30, "the edge's offline status")
        offline_at = {topic: at for at, topic, payload, _ in watcher.messages
                      if topic.endswith("/available") and payload == "offline" and at >= stopped_at}
        assert set(offline_at) == {f"{BASE}/cameras/{name}/available" for name in NAMES}
        assert all(at <= shutdown for at in offline_at.values()), "the cameras' offline come before the status"
    finally:
        watcher.close()
    # The broker's own account of each camera connection's end: a clean DISCONNECT ("disconnected."),
    # never a dropped socket ("closed its connection."), which would have published the Will instead.
    broker_log = broker.folder / "data" / "mosquitto.log"
    for name in NAMES:
        client_id = f"hgr-edge-{EDGE}/cameras/{name}"
        line = f"Client {client_id} disconnected."
        await asyncio.to_thread(poll, lambda: line in broker_log.read_text(), 10,  # noqa: B023 - awaited here
                                f"{client_id}'s DISCONNECT in the broker log")
        text = broker_log.read_text()
        assert f"Client {client_id} closed its connection." not in text
        assert f"as {client_id} (p5, c1, k{KEEPALIVE_S}, u'{EDGE}')" in text  # MQTT v5, the edge's user, keepalive

