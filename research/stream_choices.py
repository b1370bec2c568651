"""The measurements behind two defaults of the stream path (docs/benchmarks.md, "Stream path choices").

``python -m research.stream_choices motion``: how far camera noise, drift and JPEG move the 64×48 motion
thumbnail between consecutive frames (``loadtest/clips.py``'s sensor), against how far a hand appearing
moves it (a hand cut from one photo, at 15 % of the frame height, pasted into another) — the evidence for
``MOTION_THRESHOLD``.

``python -m research.stream_choices decode``: the photos as large camera frames (1280×960, 1920×1440 and
640×480), decoded in full and at 1/2 and 1/4 scale, through the LiteRT hand pipeline: decode time, finger
counts as labelled, landmark distance from the full decode — the evidence for ``REDUCED_DECODE_MIN_SIDE``;
and the header check of such a frame (``read_header``) against Pillow opening it.

``python -m research.stream_choices streams [--pipeline litert|mediapipe]``: one real worker; its RSS
idle, with 64 streams, with 32 streams cycling every option (num_hands 1-4, full/lite, mirrored), after
closing them, and the queueing of the next frame after 64 streams close (the stall a synchronous close
would cause). The acceptance bounds are asserted by tests/test_stream_pipeline.py; this prints the numbers.

``python -m research.stream_choices cpu``: a real ``hgr edge`` (2 workers) per ``STREAM_PIPELINE``, 8
closed-loop one-hand camera streams for 8 s; the CPU time per answered frame of the edge's process, each
worker and the client (psutil): the model work per frame, free of how a shared machine schedules the
processes of a closed loop.

All print one line per case; ``--every N`` takes every N-th photo (default: all 210).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from hgr.common.config import load_settings
from hgr.common.inference.hands.pipeline import HandPipeline
from hgr.common.inference.images import ImageLimits, read_header
from hgr.common.inference.pool import InferencePool
from hgr.common.inference.results import hand_to_dict
from hgr.common.inference.stream_state import thumbnail
from hgr.common.options import DetectOptions
from hgr.loadtest.clips import Sensor, add_noise, drift_path, encode_jpeg, fit, look, photo_folder, read_labels
from hgr.loadtest.procs import children, cpu_seconds, rss_mb


def _decode_rgb(data: bytes) -> np.ndarray:
    rgb: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="RGB")
    return rgb


def _hand_crops(pipe: HandPipeline, images: list[np.ndarray], want: int) -> list[np.ndarray]:
    crops = []
    for bgr in images:
        hands = pipe.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 1)
        if not hands:
            continue
        h, w = bgr.shape[:2]
        xs, ys = hands[0].landmarks[:, 0], hands[0].landmarks[:, 1]
        x0, x1 = int(max(0.0, xs.min()) * w), int(min(1.0, xs.max()) * w)
        y0, y1 = int(max(0.0, ys.min()) * h), int(min(1.0, ys.max()) * h)
        if x1 - x0 > 10 and y1 - y0 > 10:
            crops.append(bgr[y0:y1, x0:x1])
        if len(crops) == want:
            break
    return crops


def motion(images: list[np.ndarray], pipe: HandPipeline, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    for sensor in (Sensor(), Sensor(noise_sigma=6, drift_px=3.0, scale_wobble=0.008), Sensor(flicker=0.03)):
        worst = []
        for bgr in images:
            prev: np.ndarray | None = None
            most = 0
            for pose in drift_path(90, sensor, rng):
                frame = encode_jpeg(add_noise(look(bgr, pose), sensor.noise_sigma, rng), sensor.jpeg_quality)
                t = thumbnail(_decode_rgb(frame))
                if prev is not None:
                    most = max(most, int(np.abs(t - prev).max()))
                prev = t
            worst.append(most)
        print(f"no hand, {sensor}: largest thumbnail change between consecutive frames: max {max(worst)}, "
              f"median {statistics.median(worst)}")
    crops = _hand_crops(pipe, images, 30)
    changes = []
    sensor = Sensor()
    for i, bgr in enumerate(images):
        crop = crops[i % len(crops)]
        scale = 0.15 * bgr.shape[0] / crop.shape[0]
        crop = cv2.resize(crop, (max(1, int(crop.shape[1] * scale)), max(1, int(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
        x = int(rng.integers(0, bgr.shape[1] - crop.shape[1]))
        y = int(rng.integers(0, bgr.shape[0] - crop.shape[0]))
        with_hand = bgr.copy()
        with_hand[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
        before, after = (thumbnail(_decode_rgb(encode_jpeg(add_noise(img, 10, rng), sensor.jpeg_quality)))
                         for img in (bgr, with_hand))
        changes.append(int(np.abs(after - before).max()))
    changes.sort()
    print(f"a hand appearing (15 % of the frame height, noise 10): largest thumbnail change: min {changes[0]}, "
          f"lowest five {changes[:5]}, median {statistics.median(changes)}")


def decode(paths: list[Path], labels: dict[str, int], pipe: HandPipeline) -> None:
    for width, height in ((640, 480), (1280, 960), (1920, 1440)):
        rows: dict[int, dict[str, list[float]]] = {f: {"decode": [], "gap": [], "right": [], "same": []}
                                                   for f in (1, 2, 4)}
        short = {}
        header_ms: dict[str, list[float]] = {"read_header": [], "Pillow": []}
        for path in paths:
            raw = cv2.imread(str(path))
            if raw is None:
                continue
            up = cv2.INTER_CUBIC if width > raw.shape[1] else cv2.INTER_AREA
            data = encode_jpeg(cv2.resize(raw, (width, height), interpolation=up), 90)
            _time_headers(data, header_ms)
            reference: list[tuple[np.ndarray, int]] = []
            for f in (1, 2, 4):
                start = time.perf_counter()
                rgb: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=-(-height // f),
                                                         min_width=-(-width // f))
                rows[f]["decode"].append((time.perf_counter() - start) * 1000)
                short[f] = min(rgb.shape[:2])
                found = [(h.landmarks[:, :2], hand_to_dict(h.landmarks, h.world_landmarks, h.handedness,
                                                           h.handedness_score, False)["fingers"])
                         for h in pipe.detect(rgb, 2)]
                if f == 1:
                    reference = found
                rows[f]["right"].append(float(len(found) == 1 and found[0][1] == labels[path.name]))
                rows[f]["same"].append(float([c for _, c in found] == [c for _, c in reference]))
                if found and reference:
                    rows[f]["gap"].append(float(np.median(np.linalg.norm(found[0][0] - reference[0][0], axis=1))))
        print(f"{width}×{height} header: read_header p50 {statistics.median(header_ms['read_header']):.3f} ms, "
              f"Pillow's open + size + EXIF (what it did for every JPEG before) "
              f"{statistics.median(header_ms['Pillow']):.3f} ms")
        for f, r in rows.items():
            print(f"{width}×{height} decoded at 1/{f} (short side {short[f]}): decode p50 "
                  f"{statistics.median(r['decode']):.2f} ms, counted as labelled {int(sum(r['right']))}/"
                  f"{len(r['right'])}, counts as the full decode {int(sum(r['same']))}/{len(r['same'])}, "
                  f"landmarks from the full decode: median {statistics.median(r['gap']) * 100:.2f} % of the "
                  f"image, p90 {float(np.percentile(r['gap'], 90)) * 100:.2f} %")


def _time_headers(data: bytes, out: dict[str, list[float]], rounds: int = 20) -> None:
    """Per call, the best of ``rounds``: ``read_header`` (a JPEG without EXIF: libjpeg-turbo's header parser)
    and Pillow opening the same bytes for their size and EXIF."""
    def pillow() -> None:
        with Image.open(io.BytesIO(data)) as img:
            img.getexif()

    for name, call in (("read_header", lambda: read_header(data, ImageLimits())), ("Pillow", pillow)):
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - start)
        out[name].append(best * 1000)


async def streams(frames: list[bytes], model: str, lite: str, pipeline: str) -> None:
    settings = load_settings({}, env_file=None, model_path=model, model_lite_path=lite, stream_pipeline=pipeline)
    pool = InferencePool(settings, {"full": model, "lite": lite}, service="edge", workers=1)
    await pool.start()
    try:
        pid = pool.stats()["pids"][0]
        assert isinstance(pid, int)
        idle = rss_mb(pid)
        print(f"{pipeline}: idle worker {idle:.0f} MB")
        names = [f"a{i}" for i in range(64)]
        for k in range(3):
            await asyncio.gather(*(pool.submit(frames[(i + k) % len(frames)], DetectOptions(), stream=n)
                                   for i, n in enumerate(names)))
        print(f"{pipeline}: 64 streams, 3 frames each: +{rss_mb(pid) - idle:.0f} MB")
        start = time.monotonic()
        for n in names:
            pool.close_stream(n)
        after = await pool.submit(frames[0], DetectOptions(), stream="after")
        print(f"{pipeline}: next frame after closing 64 streams: queued {after['timing']['queue_ms']:.1f} ms, "
              f"answered {(time.monotonic() - start) * 1000:.1f} ms after the closes")
        options = [DetectOptions(n, m, v) for n in (1, 2, 3, 4) for v in ("full", "lite") for m in (False, True)]
        for round_ in range(3):
            names = [f"c{round_}-{i}" for i in range(32)]
            for k in range(len(options)):
                await asyncio.gather(*(pool.submit(frames[(i + k) % len(frames)], options[(i + k) % len(options)],
                                                   stream=n) for i, n in enumerate(names)))
            grown = rss_mb(pid) - idle
            for n in names:
                pool.close_stream(n)
            after = await pool.submit(frames[0], DetectOptions(), stream=f"after-{round_}")
            print(f"{pipeline}: 32 streams cycling 16 options, round {round_ + 1}: +{grown:.0f} MB; after closing "
                  f"them +{rss_mb(pid) - idle:.0f} MB, next frame queued {after['timing']['queue_ms']:.1f} ms")
    finally:
        await pool.close()


def cpu(images: list[np.ndarray], model: str, seconds: float = 8.0) -> None:
    from hgr.loadtest.camera import edge_streams  # the camera bench's closed-loop client
    from hgr.loadtest.clips import Clip, render_frame
    from hgr.loadtest.ws_stream import running_edge

    rng = np.random.default_rng(0)
    sensor = Sensor()
    clips = [Clip(f"c{i}", "one_hand", tuple(render_frame(img, pose, sensor, rng)
                                             for pose in drift_path(60, sensor, rng)), (0,) * 60, (1,) * 60)
             for i, img in enumerate(images)]
    for pipeline in ("litert", "mediapipe"):
        env = {"HGR_MODEL_PATH": model, "WORKERS": "2", "MAX_FPS": "1000", "AUTH_ENABLED": "false",
               "STREAM_PIPELINE": pipeline}
        with running_edge(env) as (port, proc):
            pids = [proc.pid, *children(proc.pid)]
            before, mine, start = [cpu_seconds(p) for p in pids], time.process_time(), time.monotonic()
            run = asyncio.run(edge_streams(f"ws://127.0.0.1:{port}/ws", clips, 1.0, seconds))
            wall, n = time.monotonic() - start, len(run.answers)
            used = [(cpu_seconds(p) - b) * 1000 / n for p, b in zip(pids, before, strict=True)]
        print(f"{pipeline}: {n} frames in {wall:.1f} s ({n / wall:.1f}/s); CPU ms per frame: edge process "
              f"{used[0]:.2f}, workers {' + '.join(f'{u:.2f}' for u in used[1:])} = {sum(used[1:]):.2f}, client "
              f"{(time.process_time() - mine) * 1000 / n:.2f}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.stream_choices")
    parser.add_argument("what", choices=("motion", "decode", "streams", "cpu"))
    parser.add_argument("--pipeline", default="litert", choices=("litert", "mediapipe"), help="streams: the path")
    parser.add_argument("--lite-model", default="../shared/models/hand_landmarker_lite.task")
    parser.add_argument("--every", type=int, default=1, help="take every N-th photo (default 1: all)")
    parser.add_argument("--model", default="../shared/models/hand_landmarker.task")
    args = parser.parse_args(argv)
    folder = photo_folder()
    labels = dict(read_labels(folder))
    paths = [folder / name for name in sorted(labels)][::args.every]
    if args.what == "cpu":
        with_hand = HandPipeline(args.model)
        images = [fit(img) for img in (cv2.imread(str(p)) for p in paths) if img is not None]
        one_hand = [img for img in images if len(with_hand.detect(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), 2)) == 1]
        with_hand.close()
        cpu(one_hand[:8], args.model)
        return 0
    if args.what == "streams":
        images = [fit(img) for img in (cv2.imread(str(p)) for p in paths[:8]) if img is not None]
        asyncio.run(streams([encode_jpeg(img, 80) for img in images], args.model, args.lite_model, args.pipeline))
        return 0
    pipe = HandPipeline(args.model)
    if args.what == "motion":
        images = [fit(img) for img in (cv2.imread(str(p)) for p in paths) if img is not None]
        motion(images, pipe)
    else:
        decode(paths, labels, pipe)
    pipe.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
