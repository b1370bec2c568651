"""The edge over real sockets: `hgr edge` in a subprocess with 2 real workers, websockets clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from hgr.edge import protocol
from hgr.loadtest.ws_stream import load_frames, open_stream, running_edge
from tests.support import eventually, http_get, recv_msg, worker_pids

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_FRAME_BYTES = 512 * 1024


@pytest.fixture(scope="module")
def frames(hand_photos: list[tuple[Path, int]]) -> list[bytes]:
    """12 photos, not conftest's 6: the many-client, flooding and worker-kill tests cycle through them."""
    return load_frames(hand_photos[0][0].parent, limit=12)


@pytest.fixture(scope="module")
def edge(model_path: str, lite_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(ws url, server pid)"""
    web = tmp_path_factory.mktemp("web")
    (web / "index.html").write_text("<h1>hgr demo</h1>")
    with ((tmp_path_factory.mktemp("log") / "edge.log").open("w") as log,
          running_edge({"HGR_MODEL_PATH": model_path, "HGR_MODEL_LITE_PATH": lite_model_path, "WORKERS": "2",
                        "AUTH_ENABLED": "false", "MAX_FPS": "1000", "MAX_CONNECTIONS": "40", "WEB_DIR": str(web),
                        "MAX_FRAME_BYTES": str(MAX_FRAME_BYTES), "EDGE_ID": "edge-test"},
                       log_file=log) as (port, proc)):
        yield f"ws://127.0.0.1:{port}/ws", proc.pid


async def test_hello_then_results_with_seq_and_ts_echoed(edge: tuple[str, int], frames: list[bytes]) -> None:
    ws, hello = await open_stream(edge[0])
    assert hello["type"] == "hello" and hello["protocol"] == 1 and hello["edge_id"] == "edge-test"
    assert hello["limits"]["max_frame_bytes"] == MAX_FRAME_BYTES and "full" in hello["models"]
    assert ws.subprotocol == protocol.MSGPACK
    await ws.send(protocol.encode_frame(41, frames[0], ts=1700000000123, opts={"num_hands": 1}))
    msg = await recv_msg(ws)
    assert msg["type"] == "result" and msg["seq"] == 41 and msg["ts"] == 1700000000123
    assert msg["dropped"] == 0 and isinstance(msg["hands"], list) and len(msg["hands"]) <= 1
    assert set(msg["timing"]) == {"queue_ms", "decode_ms", "infer_ms", "total_ms", "detector", "gated",
                                  "hands_tracked"}
    assert msg["timing"]["detector"] is True and msg["timing"]["gated"] is False  # a new stream looks fully
    # a bare JPEG is a frame too, numbered after the last seq
    await ws.send(frames[1])
    assert (await recv_msg(ws))["seq"] == 42
    await ws.close()


async def test_a_stream_chooses_its_model_and_hands_and_they_stick(edge: tuple[str, int], frames: list[bytes]) -> None:
    ws, hello = await open_stream(edge[0])
    assert sorted(hello["models"]) == ["full", "lite"]
    await ws.send(protocol.encode_frame(1, frames[3], opts={"model": "lite", "num_hands": 1}))
    first = await recv_msg(ws)
    await ws.send(protocol.encode_frame(2, frames[3]))  # no opts: the stream keeps lite, one hand
    second = await recv_msg(ws)
    assert [first["type"], second["type"]] == ["result", "result"]
    assert len(first["hands"]) <= 1 and len(second["hands"]) <= 1
    await ws.send(protocol.encode_frame(3, frames[3], opts={"model": "huge"}))
    assert (await recv_msg(ws))["code"] == "bad_options"
    await ws.close()
    _, body = http_get(edge[0].replace("ws://", "http://").replace("/ws", "/metrics"))
    lite = [line for line in body.decode().splitlines()
            if line.startswith('ml_inference_total{model="lite",service="edge",status="ok"}')]
    assert lite and float(lite[0].split()[-1]) >= 2, "both frames ran on the lite model"


async def test_json_mode_for_debugging(edge: tuple[str, int], frames: list[bytes]) -> None:
    ws, hello = await open_stream(edge[0], subprotocols=[protocol.JSON])
    assert ws.subprotocol == protocol.JSON and hello["encoding"] == protocol.JSON
    await ws.send(protocol.encode_frame(5, frames[2], ts=9, encoding=protocol.JSON))
    raw = await asyncio.wait_for(ws.recv(), 60)
    assert isinstance(raw, str)
    msg = json.loads(raw)
    assert msg["type"] == "result" and msg["seq"] == 5 and msg["ts"] == 9
    await ws.close()


async def test_many_clients_get_their_own_results(edge: tuple[str, int], frames: list[bytes]) -> None:
    def sized(n: int) -> bytes:
        # Each client's photo has its own width, so a result shows whose frame it was computed on.
        image = cv2.imdecode(np.frombuffer(frames[n % len(frames)], np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        return cv2.imencode(".jpg", cv2.resize(image, (320 + 8 * n, 240)))[1].tobytes()

    async def client(n: int) -> list[dict[str, Any]]:
        ws, _ = await open_stream(edge[0])
        got, image = [], sized(n)
        for i in range(4):
            await ws.send(protocol.encode_frame(n * 1000 + i, image, ts=n))
            got.append(await recv_msg(ws, 120))
        await ws.close()
        return got

    results = await asyncio.gather(*(client(n) for n in range(12)))
    for n, got in enumerate(results):
        assert [m["type"] for m in got] == ["result"] * 4, got
        assert [m["seq"] for m in got] == [n * 1000 + i for i in range(4)]
        assert all(m["ts"] == n and m["image_size"] == [320 + 8 * n, 240] for m in got)


async def test_bad_frames_get_errors_and_the_connection_survives(edge: tuple[str, int], frames: list[bytes]) -> None:
    ws, _ = await open_stream(edge[0])
    jpeg = frames[0]
    bad = [
        (b"garbage bytes that are no image", "bad_message", None),
        (jpeg[: len(jpeg) // 2], "corrupt_image", 1),  # truncated JPEG, numbered by the edge
        (msgpack.packb({"type": "frame", "seq": "x", "image": jpeg}), "bad_frame", None),
        (msgpack.packb({"type": "frame", "seq": 10}), "bad_frame", 10),
        (msgpack.packb({"type": "frame", "seq": 11, "image": 123}), "bad_frame", 11),
        (msgpack.packb({"type": "frame", "seq": 12, "image": b"\x00" * 100}), "unsupported_format", 12),
        (protocol.encode_frame(13, jpeg, opts={"num_hands": 9}), "bad_options", 13),
        (protocol.encode_frame(14, jpeg, opts={"colour": "red"}), "bad_options", 14),  # type: ignore[arg-type]  # on purpose
        (protocol.encode_frame(15, jpeg, opts="lite"), "bad_options", 15),  # type: ignore[arg-type]  # on purpose
    ]
    await ws.send(frames[1])  # seq 0, so the truncated bare JPEG gets seq 1
    assert (await recv_msg(ws))["seq"] == 0
    for message, code, seq in bad:
        await ws.send(message)
        msg = await recv_msg(ws)
        assert msg["type"] == "error" and msg["code"] == code and msg.get("seq") == seq, (code, msg)
        assert msg["message"]
    await ws.send(protocol.encode_frame(16, jpeg))
    msg = await recv_msg(ws)
    assert msg["type"] == "result" and msg["seq"] == 16
    await ws.close()


async def test_oversize_message_closes_1009(edge: tuple[str, int]) -> None:
    ws, _ = await open_stream(edge[0])
    await ws.send(b"\xff\xd8\xff" + b"\x00" * (MAX_FRAME_BYTES + 10))
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 30)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_text_on_a_msgpack_connection_closes_1003(edge: tuple[str, int]) -> None:
    ws, _ = await open_stream(edge[0])
    await ws.send('{"type": "frame"}')
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 30)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1003


async def test_a_flooding_client_gets_drops_not_a_backlog(edge: tuple[str, int], frames: list[bytes]) -> None:
    ws, _ = await open_stream(edge[0])
    sent = 150
    results: list[dict[str, Any]] = []

    async def receive() -> None:
        while True:
            msg = await recv_msg(ws, 120)
            results.append(msg)
            if msg.get("seq") == sent - 1:
                return

    receiver = asyncio.create_task(receive())
    for seq in range(sent):  # as fast as the socket takes them, never waiting for a result
        await ws.send(protocol.encode_frame(seq, frames[seq % len(frames)]))
    await asyncio.wait_for(receiver, 120)
    await ws.close()
    seqs = [m["seq"] for m in results]
    assert all(m["type"] == "result" for m in results)
    assert seqs == sorted(seqs) and seqs[-1] == sent - 1, "latest frame wins: the last frame is answered"
    dropped = sum(m["dropped"] for m in results)
    assert dropped > 0 and len(results) + dropped == sent, "every frame is answered or counted as dropped"
    assert len(results) < sent // 2


async def test_killing_a_worker_fails_only_its_frame(edge: tuple[str, int], frames: list[bytes]) -> None:
    server_pid = edge[1]
    pids = worker_pids(server_pid)
    assert len(pids) == 2
    streams = [await open_stream(edge[0]) for _ in range(4)]  # balanced: two streams per worker
    outcomes: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(streams))}
    killed = False

    async def run(i: int) -> None:
        ws = streams[i][0]
        for seq in range(30):
            await ws.send(protocol.encode_frame(seq, frames[seq % len(frames)]))
            outcomes[i].append(await recv_msg(ws, 180))

    tasks = [asyncio.create_task(run(i)) for i in range(len(streams))]
    while not killed and not all(t.done() for t in tasks):
        if sum(len(v) for v in outcomes.values()) >= 8:
            os.kill(pids[0], signal.SIGKILL)
            killed = True
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)
    assert killed
    restarted = [m for v in outcomes.values() for m in v if m["type"] == "error"]
    assert restarted and all(m["code"] == "worker_restarted" for m in restarted)
    assert len(restarted) <= 2, "only the killed worker's in-flight frames (one per stream) fail"
    for i, msgs in outcomes.items():
        # every stream finished all its frames, in order; no frame went unanswered
        assert [m["seq"] for m in msgs] == list(range(30)), i
    await eventually(lambda: len(worker_pids(server_pid)) >= 2, 120, "the killed worker to be replaced")
    new_pids = worker_pids(server_pid)
    assert len(new_pids) == 2 and pids[0] not in new_pids
    for ws, _ in streams:
        await ws.close()
    status, body = http_get(edge[0].replace("ws://", "http://").replace("/ws", "/metrics"))
    assert status == 200 and b'hgr_worker_restarts_total{service="edge"} 1.0' in body


async def test_http_endpoints(edge: tuple[str, int]) -> None:
    base = edge[0].replace("ws://", "http://").removesuffix("/ws")
    status, body = http_get(base + "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = http_get(base + "/ready")
    assert status == 200 and json.loads(body)["status"] == "ready"
    status, body = http_get(base + "/metrics")
    text = body.decode()
    assert status == 200
    for name in ("hgr_frames_received_total", "hgr_frames_processed_total", "hgr_frame_latency_seconds_bucket",
                 "hgr_websocket_connections", 'ml_inference_total{model="full",service="edge",status="ok"}',
                 "batch_processing_size_bucket", 'hand_gesture_errors_total{code="bad_message",service="edge"}'):
        assert name in text, name
    status, body = http_get(base + "/")
    assert status == 200 and b"hgr demo" in body
