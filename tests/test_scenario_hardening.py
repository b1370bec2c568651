"""Regression tests of issue 13's repros, each through the real server (uvicorn, inference worker, model):
an image side that aborted a worker, hostile and rate-limited JSON bodies, lone surrogates and NaN, a JPEG
cut in the middle, slow headers and bodies, nested JSON on a WebSocket and in MQTT payloads.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import pytest_asyncio

from hgr.common.config import load_settings
from hgr.common.inference.pool import InferencePool
from hgr.common.messaging import topics
from hgr.common.messaging.bus import make_bus
from hgr.common.options import DetectOptions
from hgr.edge import protocol
from hgr.hub.app import Hub
from hgr.hub.fleet import FleetService
from hgr.loadtest.ws_stream import open_stream
from hgr.serve import uvicorn_options
from tests.hub_support import b64, hub_app, hub_settings, serve_hub
from tests.support import eventually, recv_msg, serve_app, serve_edge

pytestmark = pytest.mark.asyncio(loop_scope="module")

SMALL = "small-secret-key-456"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(hub_pool: InferencePool) -> AsyncIterator[str]:
    settings = hub_settings(auth_enabled=True, api_keys=f"big:big-secret-key-123,small:{SMALL}:1/600",
                            rate_limit_requests=10_000)
    async with serve_hub(settings, hub_pool) as (url, _):
        yield url


@pytest.fixture(scope="module")
def photo(hand_photos: list[tuple[Path, int]]) -> bytes:
    return hand_photos[0][0].read_bytes()


BIG = {"X-API-Key": "big-secret-key-123"}
JSON_TYPE = {"content-type": "application/json", **BIG}


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


async def _raw(port: int, head: bytes, body: bytes = b"", *, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    """Send ``head`` and only ``body`` (not what Content-Length promises) and read the answer: the server
    must answer without waiting for the rest."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        raw_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(raw_head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in raw_head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return status, json.loads(await asyncio.wait_for(reader.readexactly(length), timeout))
    finally:
        writer.close()


def _post_head(path: str, length: int, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


def _png(width: int, height: int) -> bytes:
    ok, png = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    return png.tobytes()


# --- 1: an image side that aborted the worker ---

async def test_a_32767_px_image_is_refused_and_the_worker_lives(hub: str, hub_pool: InferencePool) -> None:
    restarts = hub_pool.stats()["restarts"]
    async with httpx.AsyncClient(base_url=hub, headers=BIG, timeout=120) as client:
        for _ in range(3):
            r = await client.post("/detect-fingers", json={"image_base64": b64(_png(32_767, 8))})
            assert r.status_code == 413 and r.json()["error"]["code"] == "image_side_too_large", r.text
        wide = await client.post("/detect-fingers", json={"image_base64": b64(_png(16_384, 8))})
        assert wide.status_code == 200 and wide.json()["image_size"] == [16_384, 8]
        ready = await client.get("/ready")
        assert ready.status_code == 200
    assert hub_pool.stats()["restarts"] == restarts


async def test_with_max_image_side_raised_the_worker_downscales_instead_of_aborting(model_path: str) -> None:
    """MAX_IMAGE_SIDE=32766: the image reaches the worker, which downscales it to INFER_MAX_SIDE before
    MediaPipe (whose warps abort at 32767) ever sees it."""
    settings = load_settings({}, env_file=None, workers=1, max_image_side=32_766)
    pool = InferencePool(settings, {"full": model_path}, service="hub", workers=1)
    await pool.start()
    try:
        result = await pool.submit(_png(32_766, 8), DetectOptions())
        assert result["image_size"] == [32_766, 8] and result["hands"] == []
        assert pool.stats()["restarts"] == 0 and pool.ready
    finally:
        await pool.close()


# --- 2: hostile and rate-limited bodies are refused while they arrive ---

async def test_a_63_mb_body_of_empty_lists_is_refused_after_its_first_chunk(hub: str) -> None:
    head = _post_head("/detect-fingers-batch", 63_000_000, "X-API-Key: big-secret-key-123\r\n")
    status, body = await _raw(_port(hub), head, b"[" + b"[]," * 100_000)  # 300 KB of the promised 63 MB
    assert status == 413 and body["error"]["code"] == "json_too_complex" and body["error"]["request_id"]


async def test_a_string_longer_than_any_image_is_refused_while_it_arrives(hub: str) -> None:
    """A well-formed 63 MB body whose one string is longer than the base64 of MAX_IMAGE_SIZE (20 MiB): refused
    once the string passes that length, never held in full nor parsed (it cost 170 MB of RSS before)."""
    head = _post_head("/detect-fingers-batch", 63_000_000, "X-API-Key: big-secret-key-123\r\n")
    body = b'{"images": [{"image_base64": "' + b"A" * 30_000_000  # past 28.4 MB; 33 MB never sent
    status, answer = await _raw(_port(hub), head, body)
    assert status == 413 and answer["error"]["code"] == "image_too_large"


async def test_a_deeply_nested_body_is_a_4xx(hub: str) -> None:
    async with httpx.AsyncClient(base_url=hub, timeout=60) as client:
        for path in ("/detect-fingers", "/detect-fingers-batch"):
            r = await client.post(path, content=b"[" * 100_000, headers=JSON_TYPE)
            assert r.status_code == 413 and r.json()["error"]["code"] == "json_too_complex"


async def test_a_limited_key_is_refused_before_its_batch_is_read(hub: str, photo: bytes) -> None:
    async with httpx.AsyncClient(base_url=hub, timeout=120) as client:
        first = await client.post("/detect-fingers", json={"image_base64": b64(photo)}, headers={"X-API-Key": SMALL})
        assert first.status_code == 200  # the key's whole allowance: 1 image per 600 s
    for path in ("/detect-fingers-batch", "/detect-fingers-upload"):
        status, body = await _raw(_port(hub), _post_head(path, 50_000_000, f"X-API-Key: {SMALL}\r\n"))
        assert status == 429 and body["error"]["code"] == "rate_limited"


# --- 3 and 5: lone surrogates, NaN, Content-Type, a JPEG cut in the middle ---

async def test_surrogates_and_non_finite_numbers_are_400_with_a_request_id(hub: str, photo: bytes) -> None:
    image = b64(photo)
    bodies = {
        "/detect-fingers": [f'{{"image_base64": "{image}", "image_id": "\\ud800"}}',
                            f'{{"image_base64": "{image}", "options": {{"\\udfff": 1}}}}',
                            f'{{"image_base64": "{image}", "image_id": NaN}}'],
        "/detect-fingers-batch": [f'{{"images": [{{"image_base64": "{image}", "image_id": "\\ud800x"}}]}}',
                                  f'{{"images": [{{"image_base64": "{image}"}}], "options": {{"\\ud800": 1}}}}'],
    }
    async with httpx.AsyncClient(base_url=hub, timeout=60) as client:
        for path, texts in bodies.items():
            for text in texts:
                r = await client.post(path, content=text.encode(), headers=JSON_TYPE)
                assert r.status_code == 400, r.text
                assert r.json()["error"]["code"] == "bad_json"
                assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
        for options in ('{"\\ud800": 1}', '{"num_hands": Infinity}', "[" * 5000):
            r = await client.post("/detect-fingers-upload", files=[("file", ("a.jpg", photo, "image/jpeg"))],
                                  data={"options": options}, headers=BIG)
            assert r.status_code in (400, 413), r.text
            assert r.json()["error"]["code"] in ("bad_json", "json_too_complex") and r.json()["error"]["request_id"]


async def test_a_jpeg_cut_in_the_middle_is_corrupt_on_every_route(hub: str, photo: bytes) -> None:
    forged = photo[: len(photo) // 2] + b"\xff\xd9"
    async with httpx.AsyncClient(base_url=hub, headers=BIG, timeout=60) as client:
        single = await client.post("/detect-fingers", json={"image_base64": b64(forged)})
        assert single.status_code == 400 and single.json()["error"]["code"] == "corrupt_image"
        upload = (await client.post("/detect-fingers-upload", files=[("file", ("a.jpg", forged, "image/jpeg"))])).json()
        assert upload["results"][0]["error"]["code"] == "corrupt_image"


# --- 5: slow headers and bodies ---

async def test_slow_headers_and_bodies_are_cut_off(hub_pool: InferencePool) -> None:
    settings = hub_settings(header_timeout=0.5, body_timeout=0.5, rate_limit_requests=1000)
    hub = Hub(settings, hub_pool)
    await hub.start()
    try:
        async with serve_app(hub_app(hub), **{**uvicorn_options(settings), "lifespan": "off"}) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /detect-fingers HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 30) == b""  # closed by the server
            writer.close()
            status, body = await _raw(port, _post_head("/detect-fingers", 1000), b'{"image_b')
            assert status == 408 and body["error"]["code"] == "request_timeout"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/health")).status_code == 200  # a prompt client is untouched
    finally:
        await hub.stop()


# --- 4 (and issue 12 item 6): nested JSON and NaN on a WebSocket, in MQTT payloads ---

async def test_websocket_json_oddities_get_error_messages_and_the_stream_lives(hub_pool: InferencePool,
                                                                              photo: bytes) -> None:
    settings = hub_settings(max_fps=1000)
    async with serve_edge(settings, hub_pool) as (_, url):
        ws, _ = await open_stream(url, subprotocols=[protocol.JSON])
        await ws.send("[" * 1500)
        assert (await recv_msg(ws))["code"] == "json_too_complex"
        await ws.send('{"type": "frame", "seq": 1, "ts": NaN, "image": ""}')
        assert (await recv_msg(ws))["code"] == "bad_message"
        await ws.send('{"type": "frame", "seq": 2, "opts": {"\\ud800": 1}, "image": ""}')
        assert (await recv_msg(ws))["code"] == "bad_message"
        await ws.send(json.dumps({"type": "frame", "seq": 3, "ts": 12.5, "image": base64.b64encode(photo).decode()}))
        result = await recv_msg(ws)
        assert result["type"] == "result" and result["seq"] == 3 and result["ts"] == 12.5
        await ws.close()
        binary, _ = await open_stream(url)
        await binary.send(protocol.encode({"type": "frame", "seq": 4, "ts": float("nan"), "image": photo},
                                          protocol.MSGPACK))
        error = await recv_msg(binary)
        assert error["code"] == "bad_frame" and error["seq"] == 4
        await binary.close()


async def test_hostile_mqtt_payloads_are_counted_invalid_and_the_hub_ingests_on() -> None:
    settings = load_settings({}, env_file=None)
    bus = make_bus(settings, service="hub")  # the in-process bus `hgr up` uses: same topics and handlers
    fleet = FleetService(settings, bus)
    await fleet.start()
    try:
        topic = topics.edge_topic(settings.mqtt_topic_prefix, "edge-1", "metrics")
        for payload in (b'{"seq":' + b"[" * 5000, b'{"seq": NaN}', b'{"edge_id": "\\udc80"}',
                        b"\x81\xa3seq" + b"\x91" * 5000 + b"\xc0"):
            bus.publish(topic, payload, qos=1, content_type=None)
        await eventually(lambda: fleet.ingested["invalid"] == 4, 10, "the four payloads rejected")
        assert bus.handler_errors == 0
    finally:
        await fleet.stop()
