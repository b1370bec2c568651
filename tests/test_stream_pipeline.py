"""Stream frames through the shared hand pipeline (STREAM_PIPELINE=litert) in real workers with the real model:
what the frame's timing says ran, how fast a hand entering an empty scene (and a second hand) is reported,
worker memory with many streams, and that closing streams does not stall the next frame.

Scenes are made from the labelled photos as a camera would film them (noise, JPEG each frame): an empty scene
is the photo with its hand painted out (cv2.inpaint over the hand's box), so when the hand "enters" only its
region changes. Frame counts are converted to time at 30 fps; no test asserts a speed."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import pytest_asyncio

from hgr.common.config import Settings, load_settings
from hgr.common.contracts import DetectionResult
from hgr.common.inference.pool import InferencePool
from hgr.common.options import DetectOptions
from hgr.loadtest import procs
from hgr.loadtest.clips import add_noise, encode_jpeg, fit, hand_window

FRAME_MS = 1000 / 30
pytestmark = pytest.mark.asyncio(loop_scope="module")


def stream_settings(model_path: str, **overrides: object) -> Settings:
    return load_settings({}, env_file=None, model_path=model_path, stream_pipeline="litert", workers=1,
                         **overrides)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(model_path: str) -> AsyncIterator[InferencePool]:
    p = InferencePool(stream_settings(model_path), {"full": model_path}, service="edge", workers=1)
    await p.start()
    yield p
    await p.close()


@dataclasses.dataclass(frozen=True)
class Photo:
    image: np.ndarray  # 640×480 BGR, one hand
    empty: np.ndarray  # the same with the hand painted out
    box: tuple[float, float, float, float]  # the hand's box in pixels
    handedness: str  # as the still (MediaPipe Tasks IMAGE) reports it


class Camera:
    """Frames as a sensor makes them: fresh noise and a JPEG encode per frame."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def frame(self, image: np.ndarray) -> bytes:
        return encode_jpeg(add_noise(image, 3.0, self.rng), 80)


async def one_hand_photos(pool: InferencePool, paths: list[Path], want: int) -> list[Photo]:
    """The first ``want`` photos in which the still finds exactly one hand, with their hand painted out."""
    found: list[Photo] = []
    for path in paths:
        raw = cv2.imread(str(path))
        assert raw is not None
        image = fit(raw)
        still = await pool.submit(encode_jpeg(image, 95), DetectOptions(num_hands=2))
        if len(still["hands"]) != 1:
            continue
        x0, y0, x1, y1 = still["hands"][0]["bbox"]
        h, w = image.shape[:2]
        box = (x0 * w, y0 * h, x1 * w, y1 * h)
        mask = np.zeros((h, w), np.uint8)
        m = 0.25 * max(box[2] - box[0], box[3] - box[1])
        cv2.rectangle(mask, (int(box[0] - m), int(box[1] - m)), (int(box[2] + m), int(box[3] + m)), 255, -1)
        empty = cv2.inpaint(image, mask, 5, cv2.INPAINT_TELEA)
        if (await pool.submit(encode_jpeg(empty, 95), DetectOptions()))["hands"]:
            continue  # the painted-out photo still shows something hand-like: not an empty scene
        found.append(Photo(image, empty, box, still["hands"][0]["handedness"]))
        if len(found) == want:
            break
    assert len(found) == want, f"only {len(found)} usable photos"
    return found


def rss_mb(pid: int) -> float:
    mb = procs.rss_mb(pid)
    assert mb > 0, f"no RSS for {pid}"
    return mb


def worker_pid(pool: InferencePool) -> int:
    pid = pool.stats()["pids"][0]
    assert isinstance(pid, int)
    return pid


async def test_timing_says_what_ran_and_an_empty_scene_is_gated(
        pool: InferencePool, hand_photos: list[tuple[Path, int]]) -> None:
    photo = (await one_hand_photos(pool, [p for p, _ in hand_photos], 1))[0]
    cam = Camera(1)
    results = [await pool.submit(cam.frame(photo.empty), DetectOptions(), stream="gate") for _ in range(5)]
    results += [await pool.submit(cam.frame(photo.image), DetectOptions(), stream="gate") for _ in range(3)]
    flags = [(r["timing"].get("detector"), r["timing"].get("gated"), r["timing"].get("hands_tracked"))
             for r in results]
    assert flags[0] == (True, False, 0)  # a new stream looks fully
    assert all(f == (False, True, 0) for f in flags[1:5]), flags  # a still empty scene is gated
    assert flags[5] == (True, False, 0) and len(results[5]["hands"]) == 1  # the hand: found on its first frame
    assert flags[6] == (False, False, 1) and len(results[6]["hands"]) == 1  # then tracked, no detector
    pool.close_stream("gate")


async def test_handedness_follows_the_still_and_the_mirrored_option(
        pool: InferencePool, hand_photos: list[tuple[Path, int]]) -> None:
    photos = await one_hand_photos(pool, [p for p, _ in hand_photos], 3)
    for i, photo in enumerate(photos):
        frame = encode_jpeg(photo.image, 95)
        # Fresh streams, so both frames take the same path (palm detector, then landmarks): the label may
        # change once tracked on an ambiguous hand (a back of a hand scores ~0.7), as with MediaPipe.
        plain = await pool.submit(frame, DetectOptions(), stream=f"hand-{i}")
        mirrored = await pool.submit(frame, DetectOptions(mirrored=True), stream=f"hand-{i}-m")
        assert plain["hands"][0]["handedness"] == photo.handedness
        assert {plain["hands"][0]["handedness"], mirrored["hands"][0]["handedness"]} == {"Left", "Right"}
        pool.close_stream(f"hand-{i}")
        pool.close_stream(f"hand-{i}-m")


async def frames_until(pool: InferencePool, stream: str, frames: list[bytes], hands: int,
                       opts: DetectOptions, *, paced: bool, detector_runs: list[int] | None = None) -> int:
    """Send ``frames`` in turn (at 30 fps if ``paced``) until a result shows ``hands`` hands; how many were sent.
    ``detector_runs`` collects the numbers of the frames on which the palm detector ran."""
    next_at = time.monotonic()
    for n, frame in enumerate(frames, 1):
        result = await pool.submit(frame, opts, stream=stream)
        if detector_runs is not None and result["timing"].get("detector"):
            detector_runs.append(n)
        if len(result["hands"]) >= hands:
            return n
        if paced:
            next_at += FRAME_MS / 1000
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    raise AssertionError(f"{hands} hand(s) not reported in {len(frames)} frames")


async def test_a_hand_entering_an_empty_scene_is_reported_within_200_ms(
        pool: InferencePool, hand_photos: list[tuple[Path, int]]) -> None:
    for i, photo in enumerate(await one_hand_photos(pool, [p for p, _ in hand_photos], 4)):
        cam, stream = Camera(10 + i), f"enter-{i}"
        for _ in range(15):  # long enough to be gated
            assert not (await pool.submit(cam.frame(photo.empty), DetectOptions(), stream=stream))["hands"]
        n = await frames_until(pool, stream, [cam.frame(photo.image) for _ in range(12)], 1, DetectOptions(),
                               paced=False)
        assert n * FRAME_MS <= 200, f"photo {i}: reported on hand frame {n}"
        pool.close_stream(stream)


def two_up(left: Photo, right: Photo, right_empty: bool) -> np.ndarray:
    halves = []
    for photo, image in ((left, left.image), (right, right.empty if right_empty else right.image)):
        x0, y0, x1, y1 = hand_window(photo.box)
        halves.append(cv2.resize(image[y0:y1, x0:x1], (320, 480), interpolation=cv2.INTER_AREA))
    return np.ascontiguousarray(np.hstack(halves))


async def test_a_second_hand_is_reported_within_the_detect_interval(
        pool: InferencePool, hand_photos: list[tuple[Path, int]]) -> None:
    """One hand tracked, a second one appears: at 30 fps the palm detector looks within DETECT_INTERVAL_MS plus
    the frame that shows it (it runs every interval while fewer than num_hands hands are tracked), and the hand
    is reported by that look or the next."""
    photos = await one_hand_photos(pool, [p for p, _ in hand_photos], 8)
    interval = pool.settings.detect_interval_ms
    pairs = []
    for i, (left, right) in enumerate(itertools.permutations(photos, 2)):
        both = two_up(left, right, right_empty=False)
        # Only scenes in which the still finds both hands, clean and through the camera's noise (as the camera
        # bench picks its scenes): many pairs defeat the palm detector itself, some only on noisy frames.
        looks_at = [encode_jpeg(both, 95), *(Camera(90 + k).frame(both) for k in range(3))]
        found = [len((await pool.submit(f, DetectOptions(num_hands=2)))["hands"]) for f in looks_at]
        if found == [2] * len(looks_at):
            pairs.append((i, left, right, both))
            if len(pairs) == 3:
                break
    assert len(pairs) >= 2, f"only {len(pairs)} usable pairs"
    for i, left, right, both in pairs:
        cam, stream = Camera(20 + i), f"second-{i}"
        one = two_up(left, right, right_empty=True)
        opts = DetectOptions(num_hands=2)
        assert await frames_until(pool, stream, [cam.frame(one) for _ in range(5)], 1, opts, paced=True) <= 2
        for _ in range(10):  # the first hand is tracked
            await pool.submit(cam.frame(one), opts, stream=stream)
        looks: list[int] = []
        n = await frames_until(pool, stream, [cam.frame(both) for _ in range(30)], 2, opts, paced=True,
                               detector_runs=looks)
        # The scheduler's part: the detector looks within the interval (plus the frame showing the hand)...
        assert (looks[0] - 1) * FRAME_MS <= interval + FRAME_MS <= 250, f"pair {i}: first look on frame {looks[0]}"
        # ...and the model's: on a noisy frame the palm detector may miss a hand it finds on the next look
        # (measured on 6 pairs: reported on frames 1, 1, 5, 11, 5, 1).
        assert n in looks[:2], f"pair {i}: second hand on frame {n}, detector ran on {looks}"
        pool.close_stream(stream)


async def close_then_next_frame_is_prompt(pool: InferencePool, streams: list[str], frame: bytes, probe: str) -> None:
    """Close ``streams``; the next frame (on a fresh stream ``probe``) waits < 50 ms in the queue: closing
    never stalls the worker."""
    for s in streams:
        pool.close_stream(s)
    after = await pool.submit(frame, DetectOptions(), stream=probe)
    assert after["timing"]["queue_ms"] < 50, after["timing"]
    pool.close_stream(probe)


async def test_64_streams_stay_within_100_mb_and_closing_them_does_not_stall(
        pool: InferencePool, hand_photos: list[tuple[Path, int]]) -> None:
    photos = await one_hand_photos(pool, [p for p, _ in hand_photos], 4)
    cam = Camera(30)
    frames = [cam.frame(p.image) for p in photos] + [cam.frame(p.empty) for p in photos]
    pid = worker_pid(pool)
    idle = rss_mb(pid)
    for round_ in range(2):
        streams = [f"many-{round_}-{i}" for i in range(64)]
        for k in range(3):
            await asyncio.gather(*(pool.submit(frames[(i + k) % len(frames)], DetectOptions(), stream=s)
                                   for i, s in enumerate(streams)))
        grown = rss_mb(pid) - idle
        assert grown < 100, f"round {round_}: 64 streams took the worker {grown:.0f} MB over idle"
        await close_then_next_frame_is_prompt(pool, streams, frames[0], f"after-{round_}")
    assert pool.stats()["alive"] == 1


async def test_32_streams_cycling_every_option_stay_within_100_mb(
        model_path: str, lite_model_path: str, hand_photos: list[tuple[Path, int]]) -> None:
    paths = {"full": model_path, "lite": lite_model_path}
    p = InferencePool(stream_settings(model_path, model_lite_path=lite_model_path), paths, service="edge", workers=1)
    await p.start()
    try:
        photos = await one_hand_photos(p, [q for q, _ in hand_photos], 2)
        cam = Camera(40)
        frames = [cam.frame(two_up(photos[0], photos[1], right_empty=False)), cam.frame(photos[0].image),
                  cam.frame(photos[1].empty)]
        options = [DetectOptions(n, mirrored, model) for n in (1, 2, 3, 4) for model in ("full", "lite")
                   for mirrored in (False, True)]
        pid = worker_pid(p)
        idle = rss_mb(pid)
        for round_ in range(3):
            streams = [f"cycle-{round_}-{i}" for i in range(32)]
            for k, opts in enumerate(options):  # every stream goes through every option
                results: list[DetectionResult] = await asyncio.gather(*(
                    p.submit(frames[(i + k) % len(frames)], options[(i + k) % len(options)], stream=s)
                    for i, s in enumerate(streams)))
                assert all(len(r["hands"]) <= options[(i + k) % len(options)].num_hands
                           for i, r in enumerate(results))
            grown = rss_mb(pid) - idle
            assert grown < 100, f"round {round_}: 32 cycling streams took the worker {grown:.0f} MB over idle"
            await close_then_next_frame_is_prompt(p, streams, frames[0], f"after-{round_}")
    finally:
        await p.close()
