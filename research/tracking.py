"""Tracked one-hand agreement over every photo a one-hand clip may use, not the few a camera bench draws.

    python -m research.tracking [--hold 30] [--json]       # HGR_MODEL_PATH as for the service

The camera benchmark (``loadtest/camera.py``) measures one-hand agreement on the 12-32 photos its clips
happen to draw, and a single photo the tracking reads differently from its still moves that figure by
3-8 points. Here every labelled photo whose still is right (``loadtest/clips.py``: MediaPipe Tasks IMAGE
counts it as labelled, on the clean photo and on noisy, drifted frames of it) becomes a clip of ``hold``
frames filmed by the default sensor, run from a fresh stream at 30 fps through the edge's stream path
(``common.inference.stream_pipeline``, in process, frames decoded as the worker decodes them) and through raw
MediaPipe Tasks VIDEO with ``num_hands=NUM_HANDS`` (the camera benchmark's baseline). Agreement is per
frame (``total_fingers`` equal to the label), split into the first frame (the palm detector's ROI, as a
still) and the tracked frames after it (the ROI from the previous frame's landmarks). Each photo misread
on some frame is run once more as a *clean* clip (no noise, no drift, no wobble; JPEG only): if the clean
clip is misread the same way, the cause is the tracked crop itself, not the simulated sensor.

The same run measures the work per frame of a camera served at its own 30 fps (not saturated, unlike the
camera benchmark's closed loops): the process CPU time per frame of each path (decode + models, measured
around each frame, both in this one process, turn by turn) and the fraction of the edge's frames that ran the
palm detector.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import mediapipe as mp

from hgr.common.config import Settings, load_settings
from hgr.common.inference.images import ImageLimits, decode_image
from hgr.common.inference.model import model_paths
from hgr.common.inference.stream_pipeline import StreamPipelines
from hgr.common.options import DetectOptions
from hgr.loadtest import camera
from hgr.loadtest import clips as camclips
from research.paths import DEFAULT_PHOTOS

FPS = 30.0
CLEAN = camclips.Sensor(noise_sigma=0.0, drift_px=0.0, scale_wobble=0.0)


@dataclass(frozen=True)
class PhotoRun:
    file: str
    label: int
    edge: tuple[int, ...]  # total_fingers per frame, the edge's stream path
    baseline: tuple[int, ...]  # raw MediaPipe VIDEO
    edge_clean: tuple[int, ...] = ()  # the same photo as a clean clip (only for photos misread somewhere)
    baseline_clean: tuple[int, ...] = ()
    edge_cpu_ms: float = 0.0  # process CPU time over the (noisy) clip, decode + models
    baseline_cpu_ms: float = 0.0
    edge_detector: int = 0  # frames of the (noisy) clip on which the edge ran the palm detector


@dataclass(frozen=True)
class Pass:
    """One clip through one path: total_fingers per frame, the CPU time it took, detector runs (edge)."""

    counts: tuple[int, ...]
    cpu_ms: float
    detector: int = 0


class Runner:
    """The edge's stream path and a fresh raw VIDEO landmarker per clip, frame by frame at ``FPS``."""

    def __init__(self, settings: Settings, paths: dict[str, str]) -> None:
        self.settings = settings
        self.model_path = paths[settings.model_variant]
        self.limits = ImageLimits.from_settings(settings)
        self.streams = StreamPipelines(settings, paths, self.limits)
        self.opts = DetectOptions(settings.num_hands, False, settings.model_variant)
        self._clip = 0

    def edge(self, clip: camclips.Clip) -> Pass:
        self._clip += 1
        stream = ("tracking", self._clip)
        counts, cpu, detector = [], 0.0, 0
        try:
            for k, frame in enumerate(clip.frames):
                start = time.process_time()
                image = decode_image(frame, self.limits, reduce_min_side=self.settings.reduced_decode_min_side)
                result = self.streams.detect(image.rgb, self.opts, stream, k * 1000 / FPS)
                cpu += time.process_time() - start
                counts.append(sum(h["fingers"] for h in result.hands))
                detector += result.detector
        finally:
            self.streams.close_stream(stream)
        return Pass(tuple(counts), cpu * 1000, detector)

    def baseline(self, clip: camclips.Clip) -> Pass:
        landmarker = camera._landmarker(self.settings, self.model_path, video=True, num_hands=self.settings.num_hands)
        counts, cpu = [], 0.0
        try:
            for k, frame in enumerate(clip.frames):
                start = time.process_time()
                rgb = camera._decode(frame)
                result = landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb),
                                                     round(k * 1000 / FPS))
                cpu += time.process_time() - start
                counts.append(sum(camera._hands(result, rgb.shape[1], rgb.shape[0])[1]))
        finally:
            landmarker.close()
        return Pass(tuple(counts), cpu * 1000)

    def close(self) -> None:
        self.streams.close()


def measure(settings: Settings, folder: Path, *, hold: int, seed: int,
            log: Callable[[str], None] = lambda _: None) -> list[PhotoRun]:
    paths = model_paths(settings)
    judge = camera.StillJudge(settings, paths[settings.model_variant])
    runner = Runner(settings, paths)
    sensor = camclips.Sensor()
    runs: list[PhotoRun] = []
    try:
        source = camclips.SceneSource(folder, judge, seed, sensor)
        for n, (file, label) in enumerate(camclips.read_labels(folder)):
            still = source.still(file, label)
            if not still.right:
                continue
            scene = [camclips.Scene(still.image, label, 1, file)]
            clip = camclips.render_clip(file, "one_hand", scene, hold=hold, sensor=sensor, seed=seed * 1000 + n)
            edge, base = runner.edge(clip), runner.baseline(clip)
            run = PhotoRun(file, label, edge.counts, base.counts, edge_cpu_ms=edge.cpu_ms, baseline_cpu_ms=base.cpu_ms,
                           edge_detector=edge.detector)
            if any(c != label for c in run.edge + run.baseline):
                clean = camclips.render_clip(file, "one_hand", scene, hold=hold, sensor=CLEAN, seed=seed * 1000 + n)
                run = replace(run, edge_clean=runner.edge(clean).counts, baseline_clean=runner.baseline(clean).counts)
            runs.append(run)
            if len(runs) % 20 == 0:
                log(f"tracking: {len(runs)} photos")
    finally:
        runner.close()
        judge.close()
    return runs


def _share(runs: Sequence[PhotoRun], side: str, frames: slice) -> float | None:
    right = total = 0
    for r in runs:
        counts = getattr(r, side)[frames]
        right += sum(c == r.label for c in counts)
        total += len(counts)
    return round(100 * right / total, 2) if total else None


def report(runs: Sequence[PhotoRun], *, hold: int, seed: int) -> dict[str, Any]:
    def agreement(side: str) -> dict[str, Any]:
        return {"all_frames": _share(runs, side, slice(None)), "first_frame": _share(runs, side, slice(0, 1)),
                "tracked_frames": _share(runs, side, slice(1, None)),
                "photos_all_right": sum(all(c == r.label for c in getattr(r, side)) for r in runs)}

    def text(counts: tuple[int, ...]) -> str:
        return "".join(map(str, counts))

    misread = [{"file": r.file, "label": r.label, "edge": text(r.edge), "baseline": text(r.baseline),
                "edge_clean": text(r.edge_clean), "baseline_clean": text(r.baseline_clean),
                "edge_wrong": sum(c != r.label for c in r.edge)}
               for r in sorted(runs, key=lambda r: -sum(c != r.label for c in r.edge)) if r.edge_clean]
    frames = sum(len(r.edge) for r in runs)
    per_frame = {side: round(sum(getattr(r, f"{side}_cpu_ms") for r in runs) / frames, 3) if frames else None
                 for side in ("edge", "baseline")}
    work = {"cpu_ms_per_frame": per_frame,
            "baseline_over_edge": (round(per_frame["baseline"] / per_frame["edge"], 3)
                                   if per_frame["edge"] and per_frame["baseline"] is not None else None),
            "edge_detector_fraction": round(sum(r.edge_detector for r in runs) / frames, 4) if frames else None}
    return {"photos": len(runs), "frames_per_photo": hold, "fps": FPS, "seed": seed,
            "sensor": asdict(camclips.Sensor()), "edge": agreement("edge"), "baseline": agreement("baseline"),
            "work": work, "misread": misread}


def markdown(rep: dict[str, Any]) -> str:
    lines = ["| path | all frames | first frame (palm ROI) | tracked frames | photos right on every frame |",
             "| --- | --- | --- | --- | --- |"]
    for side, name in (("baseline", "raw MediaPipe VIDEO"), ("edge", "edge stream path")):
        a = rep[side]
        lines.append(f"| {name} | {a['all_frames']} % | {a['first_frame']} % | {a['tracked_frames']} % | "
                     f"{a['photos_all_right']} / {rep['photos']} |")
    work = rep["work"]
    cpu = work["cpu_ms_per_frame"]
    detector = work["edge_detector_fraction"]
    lines += ["", ("| CPU per frame, raw MediaPipe VIDEO | CPU per frame, edge stream path | raw / edge | "
                   "edge frames that ran the palm detector |"), "| --- | --- | --- | --- |",
              (f"| {cpu['baseline']} ms | {cpu['edge']} ms | {work['baseline_over_edge']} | "
               f"{'—' if detector is None else f'{100 * detector:.1f} %'} |")]
    lines += ["", "| photo | label | edge, per frame | baseline, per frame | edge, clean clip | baseline, clean clip |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {m['file']} | {m['label']} | `{m['edge']}` | `{m['baseline']}` | `{m['edge_clean']}` | "
              f"`{m['baseline_clean']}` |" for m in rep["misread"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.tracking", description=__doc__.split("\n")[0])
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS))
    parser.add_argument("--hold", type=int, default=30, help="frames per clip (default 30: 1 s at 30 fps)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", action="store_true", help="the full report as JSON (default: Markdown tables)")
    args = parser.parse_args(argv)
    rep = report(measure(load_settings(), camclips.photo_folder(Path(args.photos)), hold=args.hold, seed=args.seed,
                         log=lambda m: print(m, file=sys.stderr, flush=True)), hold=args.hold, seed=args.seed)
    print(json.dumps(rep, indent=2) if args.json else markdown(rep), end="" if not args.json else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
