"""The inference pool with real worker processes and the real model."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import pytest_asyncio

from hgr.common.config import load_settings
from hgr.common.contracts import DetectionResult
from hgr.common.errors import (
    CorruptImage,
    EmptyImage,
    HgrError,
    ImageError,
    ImageSideTooLarge,
    TooManyPixels,
    UnsupportedImage,
)
from hgr.common.inference.images import decode_image
from hgr.common.inference.pool import InferencePool
from hgr.common.options import BadOptions, DetectOptions
from hgr.edge.camera import encode_frame, frame_pixels
from tests.camera_support import camera_frame
from tests.support import alive, eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class _Frame:  # a stream's frame as submit_latest pulls it (contracts.PulledFrame)
    image: bytes | memoryview
    opts: DetectOptions = field(default_factory=lambda: DetectOptions(num_hands=1))
    received_at: float = field(default_factory=time.monotonic)
    rgb_shape: tuple[int, int] | None = None  # a compressed image


@pytest.fixture(scope="module")
def photos(hand_photos: list[tuple[Path, int]]) -> list[bytes]:
    return [path.read_bytes() for path, _ in hand_photos[:8]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(model_path: str, lite_model_path: str) -> AsyncIterator[InferencePool]:
    settings = load_settings(environ={}, env_file=None, model_path=model_path)
    p = InferencePool(settings, {"full": model_path, "lite": lite_model_path}, service="edge", workers=2)
    await p.start()
    yield p
    await p.close()


def _done(pool: InferencePool) -> list[int]:
    return [w["done"] for w in pool.stats()["per_worker"]]


async def test_images_are_spread_over_workers_and_timed(pool: InferencePool, photos: list[bytes]) -> None:
    before = _done(pool)
    results = await asyncio.gather(*(pool.submit(p, DetectOptions()) for p in photos))
    after = _done(pool)
    assert all(a > b for a, b in zip(after, before)), f"both workers should have worked: {before} -> {after}"
    for r in results:
        assert list(r["timing"]) == ["queue_ms", "decode_ms", "infer_ms", "total_ms"]
        assert r["timing"]["total_ms"] >= r["timing"]["infer_ms"] > 0
        assert r["total_fingers"] == sum(h["fingers"] for h in r["hands"])
    assert sum(r["total_fingers"] > 0 for r in results) >= len(results) // 2  # real hands were found


async def test_a_stream_stays_on_one_worker(pool: InferencePool, photos: list[bytes]) -> None:
    streams = pool.stats()["streams"]
    before = _done(pool)
    for p in photos[:4]:
        await pool.submit(p, DetectOptions(num_hands=1), stream="cam-a")
    delta = [a - b for a, b in zip(_done(pool), before)]
    assert sorted(delta) == [0, 4], delta
    await pool.submit(photos[0], DetectOptions(), stream="cam-b")
    per_worker = pool.stats()["per_worker"]
    assert [w["streams"] for w in per_worker] == [1, 1], "a second stream goes to the other worker"
    pool.close_stream("cam-a")
    pool.close_stream("cam-b")
    assert pool.stats()["streams"] == streams


async def test_submit_latest_pulls_the_frame_when_its_turn_comes(pool: InferencePool, photos: list[bytes]) -> None:
    def sized(width: int) -> bytes:
        image = cv2.imdecode(np.frombuffer(photos[0], np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        return cv2.imencode(".jpg", cv2.resize(image, (width, 240)))[1].tobytes()

    # Give the stream's worker its current frame and one queued behind it: a turn must then wait.
    busy = cv2.imencode(".png", np.random.default_rng(2).integers(0, 255, (1500, 2000, 3), np.uint8))[1].tobytes()
    blockers = [asyncio.create_task(pool.submit(busy, DetectOptions(), stream="latest")) for _ in range(2)]
    await eventually(lambda: pool.stats()["in_flight"] == 2, 60, interval=0.001)
    current: dict[str, _Frame | None] = {"frame": _Frame(sized(320))}
    pulls: list[float] = []

    def pull() -> _Frame | None:
        pulls.append(time.monotonic())
        frame, current["frame"] = current["frame"], None
        return frame

    turn = asyncio.create_task(pool.submit_latest(pull, stream="latest"))
    await asyncio.sleep(0)
    newer = current["frame"] = _Frame(sized(400))  # a newer frame arrives while the turn waits
    assert pulls == [], "nothing is pulled while the worker has a frame queued"
    await asyncio.gather(*blockers)
    ran = await turn
    assert len(pulls) == 1 and ran is not None and ran.frame is newer, "the frame that ran comes back with its result"
    assert not isinstance(ran.outcome, HgrError) and ran.outcome["image_size"] == [400, 240]
    # nothing left to pull: the turn ends without running anything
    assert await pool.submit_latest(pull, stream="latest") is None
    # a frame that fails comes back with its error, not raised: the caller knows which frame it was
    broken = current["frame"] = _Frame(b"certainly not an image")
    failed = await pool.submit_latest(pull, stream="latest")
    assert failed is not None and failed.frame is broken and isinstance(failed.outcome, UnsupportedImage)
    pool.close_stream("latest")


async def _turn(pool: InferencePool, frame: _Frame, stream: str) -> DetectionResult | HgrError:
    ran = await pool.submit_latest(lambda: frame, stream=stream)
    assert ran is not None and ran.frame is frame
    return ran.outcome


async def test_a_decoded_camera_frame_runs_as_pixels_and_gets_its_jpegs_answer(
        pool: InferencePool, hand_photos: list[tuple[Path, int]]) -> None:
    """The edge's camera path, both ways, on labelled photos: a decoded frame (YUV 4:2:0, as H.264 gives it) sent
    as pixels (``frame_pixels``, today) and as the JPEG the edge used to make of it (``encode_frame``)."""
    import av

    s = pool.settings
    right = 0
    for i, (photo, label) in enumerate(hand_photos[:12]):
        frame = av.VideoFrame.from_ndarray(camera_frame(photo, 1280, 720), format="rgb24").reformat(format="yuv420p")
        jpeg = encode_frame(frame, s.reduced_decode_min_side, s.infer_max_side)
        pixels, shape = frame_pixels(frame, s.reduced_decode_min_side, s.infer_max_side)
        assert shape == (360, 640)  # reduced_size: the size the JPEG had
        a = await _turn(pool, _Frame(jpeg, DetectOptions(num_hands=2)), f"jpeg-{i}")
        b = await _turn(pool, _Frame(pixels, DetectOptions(num_hands=2), rgb_shape=shape), f"rgb-{i}")
        assert not isinstance(a, HgrError) and not isinstance(b, HgrError)
        assert b["image_size"] == a["image_size"] == [640, 360]
        assert b["total_fingers"] == a["total_fingers"], photo.name
        assert [(h["handedness"], h["fingers"]) for h in b["hands"]] == \
            [(h["handedness"], h["fingers"]) for h in a["hands"]], photo.name
        for ha, hb in zip(a["hands"], b["hands"], strict=True):  # a JPEG at quality 90 moves landmarks a little
            pairs = zip(ha["landmarks"], hb["landmarks"], strict=True)
            gap = max(abs(p[0] - q[0]) + abs(p[1] - q[1]) for p, q in pairs)
            assert gap < 0.02, (photo.name, gap)
        assert list(b["timing"])[:3] == ["queue_ms", "decode_ms", "infer_ms"]
        right += b["total_fingers"] == label
        pool.close_stream(f"jpeg-{i}")
        pool.close_stream(f"rgb-{i}")
    assert right >= 8, f"{right} of 12 labelled photos counted right"


async def test_malformed_pixel_frames_get_an_image_error_and_the_worker_serves_on(
        pool: InferencePool, photos: list[bytes]) -> None:
    before = pool.stats()
    rgb = decode_image(photos[0]).rgb
    good, shape = rgb.tobytes(), (rgb.shape[0], rgb.shape[1])
    for data, bad_shape, error in [
        (good[:-1], shape, CorruptImage),  # a byte short of its height × width
        (good, (shape[0] + 1, shape[1]), CorruptImage),
        (b"", (0, 640), EmptyImage),
        (b"", (-480, -640), EmptyImage),
        (b"", (1, 20_000), ImageSideTooLarge),
        (b"", (10_000, 10_000), TooManyPixels),
    ]:
        outcome = await _turn(pool, _Frame(data, rgb_shape=bad_shape), "malformed")
        assert isinstance(outcome, error) and isinstance(outcome, ImageError), (bad_shape, outcome)
    outcome = await _turn(pool, _Frame(good, rgb_shape=shape), "malformed")
    assert not isinstance(outcome, HgrError) and outcome["image_size"] == [shape[1], shape[0]]
    # as a camera hands them: a view (here of an array whose rows PyAV padded, packed by frame_pixels), or a view
    # a byte short, refused as the bytes are
    import av
    padded = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:, :638]), format="rgb24").reformat(format="yuv420p")
    view, padded_shape = frame_pixels(padded, 0, 4096)
    outcome = await _turn(pool, _Frame(view[:-1], rgb_shape=padded_shape), "malformed")
    assert isinstance(outcome, CorruptImage), outcome
    outcome = await _turn(pool, _Frame(view, rgb_shape=padded_shape), "malformed")
    assert not isinstance(outcome, HgrError) and outcome["image_size"] == [638, shape[0]]
    after = pool.stats()
    assert after["pids"] == before["pids"] and after["restarts"] == before["restarts"], "no worker died"
    pool.close_stream("malformed")


async def test_bad_images_and_options_raise_precise_errors(pool: InferencePool, photos: list[bytes]) -> None:
    with pytest.raises(UnsupportedImage):
        await pool.submit(b"certainly not an image", DetectOptions())
    with pytest.raises(CorruptImage) as info:
        await pool.submit(photos[0][: len(photos[0]) // 2], DetectOptions(), stream="cam-c")
    assert isinstance(info.value, ImageError) and info.value.status == 400
    only_full = InferencePool(pool.settings, {"full": pool.model_paths["full"]}, service="edge", workers=1)
    with pytest.raises(BadOptions) as opt_info:
        only_full._started = True  # no process needed: the check happens before dispatch
        await only_full.submit(photos[0], DetectOptions(model="lite"))
    assert opt_info.value.code == "model_unavailable"
    # the pool is unharmed
    assert (await pool.submit(photos[1], DetectOptions()))["image_size"]
    pool.close_stream("cam-c")


async def test_a_killed_worker_fails_its_frame_and_is_restarted(pool: InferencePool) -> None:
    # A big image keeps the worker busy long enough to be killed mid-frame.
    big = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (2000, 3000, 3), np.uint8))[1].tobytes()
    restarts = pool.stats()["restarts"]
    error = None
    for _ in range(5):  # the frame might finish before the signal lands; try again
        task = asyncio.create_task(pool.submit(big, DetectOptions(), stream="victim"))
        deadline = time.monotonic() + 30
        while pool.stats()["in_flight"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        victim_pid = pool.stats()["pids"][next(i for i, w in enumerate(pool.stats()["per_worker"])
                                               if w["streams"] and w["alive"])]
        os.kill(victim_pid, signal.SIGKILL)
        try:
            await task
        except HgrError as exc:
            error = exc
            break
    assert error is not None and error.code == "worker_restarted"
    await eventually(lambda: pool.stats()["alive"] >= 2, 120, "the killed worker to be replaced")
    stats = pool.stats()
    assert stats["alive"] == 2 and stats["restarts"] > restarts
    assert victim_pid not in stats["pids"] and not alive(victim_pid)
    # the stream continues on the replacement worker
    result = await pool.submit(big, DetectOptions(), stream="victim")
    assert result["image_size"] == [3000, 2000]
    pool.close_stream("victim")


async def test_close_finishes_in_flight_work_and_leaves_no_process(model_path: str, photos: list[bytes]) -> None:
    settings = load_settings(environ={}, env_file=None, model_path=model_path)
    p = InferencePool(settings, {"full": model_path}, service="hub", workers=1)
    await p.start()
    assert p.ready
    pids = [pid for pid in p.stats()["pids"] if pid]
    in_flight = [asyncio.create_task(p.submit(photo, DetectOptions())) for photo in photos[:3]]
    await asyncio.sleep(0)
    await p.close()
    assert all(t.done() and not t.exception() for t in in_flight), "in-flight frames were answered"
    assert not p.ready and pids and not any(alive(pid) for pid in pids)
    with pytest.raises(HgrError) as info:
        await p.submit(photos[0], DetectOptions())
    assert info.value.code == "unavailable"
