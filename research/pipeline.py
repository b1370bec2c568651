"""The LiteRT hand pipeline's calls against MediaPipe Tasks, in one
process, on the same decoded frames.

    python -m research.pipeline [--duration 10] [--photos DIR]

Per call, one thread, interleaved round-robin so a busy shared machine slows every kind alike:

- ``palms``: the palm detector and its decoding (``HandPipeline.palms``);
- ``landmarks``: one landmark-model run on a palm's ROI (``HandPipeline.landmarks``);
- ``detect``: a still through the pipeline (palms, then landmarks per hand) against Tasks IMAGE mode;
- ``tracked``: a frame whose hand is tracked (landmarks on the previous frame's ``next_roi``) against Tasks
  VIDEO mode tracking one hand with ``num_hands=1`` (landmark model only) and ``num_hands=2`` (which also runs
  the palm detector on every frame while fewer than two hands are tracked).

Only photos on which Tasks finds exactly one hand are used. Reported in ms (p10/p50/p95/p99) with ratios
of medians (and of p10s, steadier on a busy machine) against the Tasks call doing the same job, and the
resident memory each object adds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hgr.common.config import load_settings
from hgr.common.inference.hands import HandPipeline
from hgr.common.inference.model import resolve_model
from hgr.common.percentiles import percentiles
from hgr.loadtest import procs
from research.paths import DEFAULT_PHOTOS

MAX_PHOTOS = 8


def rss_mb() -> float:
    return procs.rss_mb(os.getpid())


def decode(frames: list[bytes]) -> list[np.ndarray]:
    """Each distinct frame once, as RGB."""
    images = []
    for frame in dict.fromkeys(frames):
        bgr = cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None:
            images.append(np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return images


def measure(bundle: str, images: list[np.ndarray], duration: float) -> dict[str, Any]:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    def landmarker(mode: Any, hands: int) -> Any:
        return vision.HandLandmarker.create_from_options(vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=bundle), running_mode=mode, num_hands=hands))

    memory: dict[str, float] = {}
    before = rss_mb()
    pipeline = HandPipeline(bundle)
    pipeline.detect(images[0], 2)
    memory["hand_pipeline"] = round(rss_mb() - before, 1)
    before = rss_mb()
    still = landmarker(vision.RunningMode.IMAGE, 2)
    still.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=images[0]))
    memory["tasks_image_landmarker"] = round(rss_mb() - before, 1)
    before = rss_mb()
    video1 = landmarker(vision.RunningMode.VIDEO, 1)
    video1.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=images[0]), 1)
    memory["tasks_video_landmarker"] = round(rss_mb() - before, 1)
    video2 = landmarker(vision.RunningMode.VIDEO, 2)

    photos = []
    for rgb in images:
        found = still.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        ours = pipeline.detect(rgb, 2)
        if len(found.hand_landmarks) == 1 and len(ours) == 1:
            photos.append((rgb, mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), ours[0]))
        if len(photos) == MAX_PHOTOS:
            break
    if not photos:
        raise RuntimeError("no photo with exactly one hand")

    times: dict[str, list[float]] = {k: [] for k in ("palms", "landmarks", "detect", "tracked", "tasks_image",
                                                       "tasks_video_1_hand", "tasks_video_2_hands")}
    clock = {"ts": 1}

    def timed(kind: str, call: Callable[..., object], *args: Any) -> None:
        start = time.perf_counter()
        call(*args)
        times[kind].append((time.perf_counter() - start) * 1000)

    def video(lm: Any, image: Any) -> Any:
        clock["ts"] += 33
        return lm.detect_for_video(image, clock["ts"])

    deadline = time.monotonic() + duration
    rounds = 0
    while time.monotonic() < deadline or rounds == 0:
        rounds += 1
        for rgb, image, hand in photos:
            timed("palms", pipeline.palms, rgb, 2)
            timed("landmarks", pipeline.landmarks, rgb, hand.roi)
            timed("detect", pipeline.detect, rgb, 2)
            timed("tracked", pipeline.landmarks, rgb, hand.next_roi)
            timed("tasks_image", still.detect, image)
            for lm, kind in ((video1, "tasks_video_1_hand"), (video2, "tasks_video_2_hands")):
                video(lm, image)  # untimed: finds the hand of this photo, so the timed frame is tracked
                timed(kind, video, lm, image)
    for lm in (still, video1, video2):
        lm.close()
    pipeline.close()

    def ratios(q: float) -> dict[str, float]:
        at = {k: float(np.percentile(v, q)) for k, v in times.items()}
        return {
            "detect / tasks_image": round(at["detect"] / at["tasks_image"], 2),
            "tracked / tasks_video_1_hand": round(at["tracked"] / at["tasks_video_1_hand"], 2),
            "tracked / tasks_video_2_hands": round(at["tracked"] / at["tasks_video_2_hands"], 2),
            "(palms + tracked) / tasks_video_2_hands":
                round((at["palms"] + at["tracked"]) / at["tasks_video_2_hands"], 2),
        }

    return {
        "photos": len(photos), "rounds": rounds, "image_size": list(photos[0][0].shape[1::-1]),
        "per_call_ms": {k: percentiles(v, (10, 50, 95, 99)) for k, v in times.items()},
        "ratios_of_medians": ratios(50),
        # On a busy machine the fast end of each distribution is the better estimate of the work itself.
        "ratios_of_p10": ratios(10),
        "memory_mb": memory,
        "note": "one process, one thread; the machine may be shared, compare ratios, not absolute times",
    }


def main(argv: list[str]) -> int:
    from hgr.loadtest.ws_stream import load_frames

    p = argparse.ArgumentParser(prog="python -m research.pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds of measurement (default 10)")
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of JPEG photos")
    args = p.parse_args(argv)
    bundle = resolve_model(load_settings()).path
    images = decode(load_frames(args.photos, limit=4 * MAX_PHOTOS))
    print(json.dumps(measure(bundle, images, args.duration), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
