"""edge/app.py: EdgeNode's Python hooks (reporter, throttle, stats) and its shutdown, served in-process by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.exceptions import ConnectionClosed

from hgr.common.config import load_settings
from hgr.common.inference.pool import InferencePool
from hgr.common.messaging.bus import LocalBus
from hgr.edge import protocol
from hgr.edge.app import EdgeNode
from hgr.edge.reporter import EdgeReporter
from hgr.loadtest.ws_stream import open_stream
from tests.support import Recorder, eventually, recv_msg, serve_edge

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEYS = "cam:key-cam-123456,other:key-other-654321"
AUTH = {"Authorization": "Bearer key-cam-123456"}
OTHER_AUTH = {"Authorization": "Bearer key-other-654321"}


EdgeFactory = Callable[..., Awaitable[tuple[EdgeNode, str]]]


@pytest_asyncio.fixture(loop_scope="module")
async def serve(edge_pool: InferencePool) -> AsyncIterator[EdgeFactory]:
    """serve(**settings) -> (node, ws url): an EdgeNode on the shared pool behind a real uvicorn."""
    async with contextlib.AsyncExitStack() as running:
        async def start(**overrides: object) -> tuple[EdgeNode, str]:
            settings = load_settings(environ={}, env_file=None, auth_enabled=True, api_keys=KEYS, **overrides)
            return await running.enter_async_context(serve_edge(settings, edge_pool))

        yield start


async def test_reporter_hooks_and_stats(serve: EdgeFactory, frames: list[bytes]) -> None:
    node, url = await serve()
    node.reporter = recorder = Recorder()
    ws, hello = await open_stream(url, headers=AUTH)
    for seq in range(3):
        await ws.send(protocol.encode_frame(seq, frames[seq]))
        assert (await recv_msg(ws))["seq"] == seq
    await ws.send(b"not an image")
    assert (await recv_msg(ws))["code"] == "bad_message"
    await eventually(lambda: len(recorder.frames) == 3, interval=0.01)
    assert [(s, k, r["seq"]) for s, k, r in recorder.frames] == [(hello["stream"], "cam", i) for i in range(3)]
    assert all(r["type"] == "result" and "hands" in r for _, _, r in recorder.frames)
    stats = node.stats()
    assert stats["frames_received"] == 4 and stats["frames_processed"] == 3
    assert stats["errors"] == {"bad_message": 1} and stats["frames_by_key"] == {"cam": 3}
    assert stats["connections"] == 1 and stats["workers"]["alive"] == 1
    assert stats["latency_ms"]["p50"] > 0 and stats["latency_ms"]["p99"] >= stats["latency_ms"]["p50"]
    await ws.close()
    await eventually(lambda: recorder.closed == [hello["stream"]], interval=0.01)
    assert node.stats()["connections"] == 0


async def test_throttle_drops_one_keys_frames_only(serve: EdgeFactory, frames: list[bytes]) -> None:
    node, url = await serve()
    node.set_throttle("cam", 1.0)
    cam, _ = await open_stream(url, headers=AUTH)
    other, _ = await open_stream(url, headers=OTHER_AUTH)
    for seq in range(10):  # 10 frames at once: the bucket lets ~1 through
        await cam.send(protocol.encode_frame(seq, frames[seq % len(frames)]))
    for seq in range(5):  # the other key is not throttled
        await other.send(protocol.encode_frame(seq, frames[seq]))
        msg = await recv_msg(other)
        assert msg["type"] == "result" and msg["dropped"] == 0
    await eventually(lambda: node.stats()["frames_dropped"].get("throttled", 0) >= 8, interval=0.01)
    node.set_throttle("cam", None)
    await cam.send(protocol.encode_frame(100, frames[0]))
    results: list[dict[str, Any]] = []
    while not results or results[-1]["seq"] != 100:
        results.append(await recv_msg(cam))
    assert sum(m["dropped"] for m in results) + len(results) == 11, "throttled frames are reported as dropped"
    await cam.close()
    await other.close()


async def test_max_fps_drops_the_excess(serve: EdgeFactory, frames: list[bytes]) -> None:
    node, url = await serve(max_fps=4.0)
    ws, hello = await open_stream(url, headers=AUTH)
    assert hello["limits"]["max_fps"] == 4.0
    for seq in range(12):
        await ws.send(protocol.encode_frame(seq, frames[seq % len(frames)]))
    await eventually(lambda: node.stats()["frames_received"] == 12, interval=0.01)
    assert node.stats()["frames_dropped"].get("rate_limited", 0) >= 6
    await ws.close()


async def test_a_garbage_flood_gets_no_more_answers_than_max_fps(serve: EdgeFactory, frames: list[bytes]) -> None:
    node, url = await serve(max_fps=4.0)
    ws, _ = await open_stream(url, headers=AUTH)
    for _ in range(40):
        await ws.send(b"garbage")
    await eventually(lambda: node.stats()["frames_received"] == 40, interval=0.01)
    stats = node.stats()
    assert stats["errors"].get("bad_message", 0) + stats["frames_dropped"].get("rate_limited", 0) == 40
    assert stats["errors"]["bad_message"] <= 10 and stats["frames_dropped"]["rate_limited"] >= 30
    # After the flood, valid frames are answered again once the rate gate has refilled: offer one every
    # 0.3 s (slower than MAX_FPS) until the edge has answered one.
    seqs = itertools.count(1)

    async def one_answered() -> bool:
        await ws.send(protocol.encode_frame(next(seqs), frames[0]))
        return bool(node.stats()["frames_processed"] >= 1)

    await eventually(one_answered, 30, "a valid frame answered after the flood", interval=0.3)
    while (msg := await recv_msg(ws))["type"] != "result":
        pass
    assert msg["seq"] >= 1 and msg["dropped"] >= 30
    await ws.close()


async def test_stop_answers_in_flight_frames_then_closes_1001(serve: EdgeFactory, edge_pool: InferencePool,
                                                              frames: list[bytes]) -> None:
    node, url = await serve()
    ws, _ = await open_stream(url, headers=AUTH)
    await ws.send(protocol.encode_frame(7, frames[0]))
    await eventually(lambda: edge_pool.stats()["in_flight"] + edge_pool.stats()["queued"] >= 1, interval=0.01)
    await node.stop()
    msg = await recv_msg(ws)
    assert msg["type"] == "result" and msg["seq"] == 7
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 30)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001


async def test_without_a_web_directory_the_root_says_so(serve: EdgeFactory, tmp_path: Path) -> None:
    import urllib.request

    _, url = await serve(web_dir=str(tmp_path / "absent"))
    base = url.replace("ws://", "http://").removesuffix("/ws")
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(base + "/", timeout=10).read())
    assert b"web demo is not installed" in body and b"/ws" in body


async def test_the_key_throttle_table_holds_only_the_keyring(edge_pool: InferencePool) -> None:
    """Issue 20: anyone who may publish on the control topic named a new key per command, and the edge
    kept a throttle (and a timer to lift it) for each. Now a key the edge does not have is ignored."""
    settings = load_settings(environ={}, env_file=None, auth_enabled=True, api_keys=KEYS, edge_id="cam-bounded")
    async with serve_edge(settings, edge_pool, bus=LocalBus(settings)) as (node, _):
        await _only_the_keyring_is_throttled(node)


async def _only_the_keyring_is_throttled(node: EdgeNode) -> None:
    reporter = node.reporter
    assert isinstance(reporter, EdgeReporter) and node.bus is not None
    control = "hgr/v1/edges/cam-bounded/control"
    for i in range(1000):
        node.bus.publish(control, json.dumps({"cmd": "throttle", "key": f"k{i}", "max_fps": 0,
                                              "duration_s": 3600}).encode(), qos=1)
    node.bus.publish(control, json.dumps({"cmd": "throttle", "key": "cam", "max_fps": 0,
                                          "duration_s": 3600}).encode(), qos=1)
    await eventually(lambda: reporter.control_received.get("throttle") == 1, 10, "the keyring's throttle")
    await eventually(lambda: reporter.control_ignored.get("unknown_key") == 1000, 10, "1000 unknown keys ignored")
    assert node.throttle_for("cam") is not None and node.throttle_for("k7") is None
    assert set(node._throttles) == {"cam"} and set(reporter._lifts) == {("key", "cam")}
