"""hgr.client against a real `hgr up`: every input kind, batch and upload, sync and async, typed errors,
429s retried by Retry-After, a WebSocket stream, and docs/client.md's example run as written."""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from hgr.client import AsyncClient, Client, HgrClientError, Retry, stream
from tests.support import free_port, http_get, stop_process, wait_ready

ROOT = Path(__file__).resolve().parent.parent
KEY = "client-test-key-0123456789"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, log = free_port(), tmp_path_factory.mktemp("client") / "up.log"
    # A small rate limit (3 per second, no burst) so the retry path meets real 429s.
    env = {**os.environ, "WORKERS": "1", "AUTH_ENABLED": "true", "API_KEYS": f"tests:{KEY}", "MQTT_URL": "",
           "REDIS_URL": "", "REDIS_ENABLED": "false", "RATE_LIMIT_REQUESTS": "3", "RATE_LIMIT_WINDOW": "1",
           "CACHE_ENABLED": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "hgr", "up", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc, 60, signal.SIGINT)


@pytest.fixture(scope="module")
def photo_server(hand_photos: list[tuple[Path, int]]) -> Iterator[str]:
    folder = hand_photos[0][0].parent
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _five(hand_photos: list[tuple[Path, int]]) -> tuple[Path, int]:
    return next((p, n) for p, n in hand_photos if n == 5)


def test_detect_takes_a_path_bytes_an_array_and_a_url_with_the_same_answer(
        up: str, hand_photos: list[tuple[Path, int]], photo_server: str) -> None:
    path, label = _five(hand_photos)
    rgb = simplejpeg.decode_jpeg(path.read_bytes(), colorspace="RGB")
    with Client(up, api_key=KEY) as hgr:
        answers = [hgr.detect(image) for image in (path, str(path), path.read_bytes(), f"{photo_server}/{path.name}")]
        from_array = hgr.detect(np.asarray(rgb))
    assert [a["total_fingers"] for a in answers] == [label] * 4
    assert from_array["total_fingers"] == label and from_array["image_size"] == answers[0]["image_size"]


def test_batch_and_upload_keep_order_and_isolate_a_bad_image(up: str, hand_photos: list[tuple[Path, int]]) -> None:
    paths = [p for p, _ in hand_photos[:2]]
    with Client(up, api_key=KEY) as hgr:
        batch = hgr.detect_batch([paths[0], b"not an image", paths[1]], options={"num_hands": 1})
        uploaded = hgr.upload(paths)
    assert [e["image_id"] for e in batch] == ["0", "1", "2"]
    assert "hands" in batch[0] and batch[1]["error"]["code"] and "hands" in batch[2]
    assert [e["filename"] for e in uploaded] == [p.name for p in paths]


def test_an_error_is_typed_with_the_catalogue_code(up: str, hand_photos: list[tuple[Path, int]]) -> None:
    with Client(up) as anonymous, pytest.raises(HgrClientError) as refused:
        anonymous.detect(hand_photos[0][0])
    assert refused.value.status == 401 and refused.value.code == "unauthorized"
    with Client(up, api_key=KEY) as hgr, pytest.raises(HgrClientError) as bad:
        hgr.detect(b"")
    assert bad.value.status == 400 and bad.value.code == "empty_image"


def _limited(base: str) -> float:
    text = http_get(f"{base}/metrics")[1].decode()
    return sum(float(m) for m in re.findall(r'^hgr_rate_limit_decisions_total\{decision="limited"\} ([0-9.e+]+)$',
                                            text, re.MULTILINE))


async def test_429s_are_retried_after_retry_after_until_they_pass(up: str, hand_photos: list[tuple[Path, int]]) -> None:
    path, label = _five(hand_photos)
    before = _limited(up)
    async with AsyncClient(up, api_key=KEY, retry=Retry(attempts=8, base_s=0.05, max_s=2.0)) as hgr:
        answers = [await hgr.detect(path) for _ in range(8)]  # 8 requests against 3 per second
    assert [a["total_fingers"] for a in answers] == [label] * 8
    assert _limited(up) > before, "the hub refused some with 429 and the client retried them"
    with Client(up, api_key=KEY, retry=Retry(attempts=1)) as once:
        refusals = 0
        for _ in range(6):
            try:
                once.detect(path)
            except HgrClientError as exc:
                assert exc.status == 429 and exc.code == "rate_limited" and exc.retry_after is not None
                refusals += 1
    assert refusals >= 1


async def test_stream_sends_one_frame_at_a_time_and_yields_each_result(
        up: str, hand_photos: list[tuple[Path, int]]) -> None:
    photos = hand_photos[:6]
    results = [r async for r in stream(up.replace("http", "ws") + "/ws", [p for p, _ in photos], api_key=KEY)]
    assert [r["seq"] for r in results] == list(range(1, len(photos) + 1))
    assert all(r["dropped"] == 0 for r in results), "paced: nothing was sent ahead of a result"


def test_the_documented_example_runs_as_written(up: str, hand_photos: list[tuple[Path, int]], tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "client.md").read_text()
    example = tmp_path / "example.py"
    example.write_text(re.findall(r"```python\n(.*?)```", doc, re.DOTALL)[0])
    path, label = _five(hand_photos)
    done = subprocess.run([sys.executable, str(example), str(path)], check=False, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HGR_URL": up, "HGR_API_KEY": KEY})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{path} {label} ")
