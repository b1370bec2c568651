"""What a candidate is held to (issue 24's gate) and measured against: the fixtures' counts, the verdict, the
camera clips through the stream path, and the control (the photos moved one pixel)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hgr.common.config import Settings
from hgr.common.inference.fingers import count_fingers, fingers_up
from hgr.common.inference.images import ImageLimits, decode_image
from research.accuracy import Photo
from research.paths import ROOT
from research.precision.candidates import Built
from research.precision.harness import serving

FIXTURE = ROOT / "tests" / "fixtures" / "landmarks.json"
Record = dict[str, Any]


def fixture_agreement(records: Sequence[Record]) -> dict[str, Any]:
    """Photos whose total count equals the one the fixture's hands give (photos the fixture lists)."""
    fixture = {p["file"]: p for p in json.loads(FIXTURE.read_text())["photos"]}
    same, differ = 0, []
    listed = [r for r in records if r["file"] in fixture]
    for r in listed:
        expected = sum(count_fingers(fingers_up(h["world_landmarks"] or h["landmarks"]))
                       for h in fixture[r["file"]]["hands"])
        if sum(h["fingers"] for h in r["hands"]) == expected:
            same += 1
        else:
            differ.append(r["file"])
    return {"photos": len(listed), "same_count": same, "differ": differ}


def verdict(stills: dict[str, Any], clips: dict[str, Any] | None) -> dict[str, bool]:
    n = stills["photos"]
    gate = {
        "count_99": stills["same_count"] >= math.ceil(0.99 * n),
        "correct": stills["correct"]["ours"] >= stills["correct"]["reference"] - 1,
        "gap_0.5": (stills["landmark_gap"]["median"] or 0.0) <= 0.005,
        "detected": abs(stills["detected"]["ours"] - stills["detected"]["reference"]) <= 1,
    }
    if clips is not None:
        gate["clips_99"] = clips["same_frames"] >= math.ceil(0.99 * clips["frames"])
    gate["pass"] = all(gate.values())
    return gate


def clip_counts(settings: Settings, paths: dict[str, str], clips: Sequence[Any],
                built: tuple[Built, Built]) -> list[tuple[int, ...]]:
    """total_fingers per frame of each clip through the edge's stream path (tracking), as research/tracking.py."""
    from research.tracking import Runner

    with serving(*built):
        runner = Runner(settings, paths)
        try:
            return [runner.edge(clip).counts for clip in clips]
        finally:
            runner.close()


def render_clips(settings: Settings, model_path: str, folder: Path, photos: int, hold: int,
                 seed: int) -> list[Any]:
    """One-hand clips of the first ``photos`` labelled photos the stills judge counts right."""
    from hgr.loadtest import camera
    from hgr.loadtest import clips as camclips

    judge = camera.StillJudge(settings, model_path)
    sensor = camclips.Sensor()
    out = []
    try:
        source = camclips.SceneSource(folder, judge, seed, sensor)
        for n, (file, label) in enumerate(camclips.read_labels(folder)):
            still = source.still(file, label)
            if still.right:
                scene = [camclips.Scene(still.image, label, 1, file)]
                out.append(camclips.render_clip(file, "one_hand", scene, hold=hold, sensor=sensor,
                                                seed=seed * 1000 + n))
            if len(out) == photos:
                break
    finally:
        judge.close()
    return out


def shifted_photos(limits: ImageLimits, folder: Path, photos: Sequence[Photo], target: Path,
                   pixels: int = 1) -> Path:
    """The photos as the service decodes them, moved ``pixels`` left (the last column repeated), saved
    losslessly (PNG) under their names in ``target``: the control, how many counts a change far below what a
    camera's noise does flips at fp32 (``pixels=0`` flips none: the round trip is lossless)."""
    import cv2

    target.mkdir(parents=True, exist_ok=True)
    (target / "labels.csv").write_bytes((folder / "labels.csv").read_bytes())
    for p in photos:
        rgb = decode_image((folder / p.file).read_bytes(), limits).rgb
        moved = np.concatenate([rgb[:, pixels:], rgb[:, rgb.shape[1] - pixels:]], axis=1) if pixels else rgb
        ok, png = cv2.imencode(".png", cv2.cvtColor(moved, cv2.COLOR_RGB2BGR))
        assert ok
        (target / p.file).write_bytes(png.tobytes())
    return target
