"""The LiteRT hand pipeline against MediaPipe Tasks on the labelled photos: IMAGE mode for stills, VIDEO mode
for a tracked frame (the ROI carried from the previous frame's landmarks).

Measured on the 210 shared photos (docs/architecture.md, "Hand pipeline"): the same hands on every photo,
landmarks 0.0007 % of the image from Tasks' at the median (0.03 % at most), handedness 185/185, finger
counts 210/210 stills and 184/184 tracked frames: the pipeline reproduces Tasks (its crop is MediaPipe's
bit for bit, tests/test_hands_crop_mediapipe.py). The bounds below are the issue's bars, or tighter where
a geometry slip would show.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from hgr.common.inference.fingers import count_fingers, fingers_up
from hgr.common.inference.hands import Hand, HandPipeline, Roi
from hgr.loadtest.procs import rss_mb


@dataclass
class Compared:
    file: str
    ours: list[Hand] = field(repr=False)
    tasks: list[tuple[np.ndarray, str]] = field(repr=False)  # landmarks (21, 2) and handedness, per hand
    ours_fingers: int
    tasks_fingers: int


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def fingers(world: list[np.ndarray]) -> int:
    return sum(count_fingers(fingers_up(w.tolist())) for w in world)


@pytest.fixture(scope="module")
def pipeline(model_path: str) -> Iterator[HandPipeline]:
    p = HandPipeline(model_path)
    yield p
    p.close()


@pytest.fixture(scope="module")
def compared(model_path: str, pipeline: HandPipeline, hand_photos: list[tuple[Path, int]]) -> list[Compared]:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.HandLandmarkerOptions(base_options=BaseOptions(model_asset_path=model_path),
                                           running_mode=vision.RunningMode.IMAGE, num_hands=2)
    out = []
    with vision.HandLandmarker.create_from_options(options) as tasks:
        for path, _ in hand_photos:
            rgb = read_rgb(path)
            res = tasks.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            ref = [(np.array([[p.x, p.y] for p in lm]), res.handedness[i][0].category_name)
                   for i, lm in enumerate(res.hand_landmarks)]
            world = [np.array([[p.x, p.y, p.z] for p in w]) for w in res.hand_world_landmarks]
            ours = pipeline.detect(rgb, 2)
            out.append(Compared(path.name, ours, ref, fingers([h.world_landmarks for h in ours]), fingers(world)))
    return out


def matched(c: Compared) -> list[tuple[Hand, np.ndarray, str]]:
    """Each Tasks hand with our nearest hand."""
    pairs = []
    for lm, label in c.tasks:
        if c.ours:
            best = min(c.ours, key=lambda h: float(np.abs(h.landmarks[:, :2] - lm).mean()))
            pairs.append((best, lm, label))
    return pairs


def test_hands_have_the_documented_shapes(compared: list[Compared]) -> None:
    hands = [h for c in compared for h in c.ours]
    assert hands
    for h in hands:
        assert h.landmarks.shape == (21, 3) and h.landmarks.dtype == np.float32
        assert h.world_landmarks.shape == (21, 3) and h.world_landmarks.dtype == np.float32
        assert h.handedness in ("Left", "Right") and 0.5 <= h.handedness_score <= 1.0
        assert 0.5 <= h.presence <= 1.0
        # World landmarks are metres around the hand's centre: a hand spans well under 30 cm.
        assert np.ptp(h.world_landmarks, axis=0).max() < 0.3


def test_same_hands_found_as_tasks(compared: list[Compared]) -> None:
    same = sum(len(c.ours) == len(c.tasks) for c in compared)
    assert same >= 0.99 * len(compared), [(c.file, len(c.ours), len(c.tasks)) for c in compared
                                           if len(c.ours) != len(c.tasks)]


def test_landmarks_within_two_percent_of_tasks(compared: list[Compared]) -> None:
    medians = [float(np.median(np.hypot(*(h.landmarks[:, :2] - lm).T))) for c in compared for h, lm, _ in matched(c)]
    assert medians
    assert float(np.median(medians)) < 0.02  # the bar
    # Much tighter in fact: a geometry slip shows here first (the palm ROI's target angle taken as π/2
    # instead of MediaPipe's 90 rad gave 0.5 % at the median; opencv-python's warp instead of MediaPipe's
    # rounding 0.03 %; as MediaPipe does both, 0.0007 %).
    assert float(np.median(medians)) < 0.0002
    assert float(np.percentile(medians, 90)) < 0.001


def test_handedness_agrees_with_tasks(compared: list[Compared]) -> None:
    pairs = [(c.file, h.handedness, label) for c in compared for h, _, label in matched(c)]
    agree = sum(ours == ref for _, ours, ref in pairs)
    assert agree >= 0.99 * len(pairs), [p for p in pairs if p[1] != p[2]]


def test_finger_counts_agree_with_tasks(compared: list[Compared]) -> None:
    """Stills: the issue's bar is 99 % (measured 210/210)."""
    agree = sum(c.ours_fingers == c.tasks_fingers for c in compared)
    assert agree >= 0.99 * len(compared), [(c.file, c.ours_fingers, c.tasks_fingers) for c in compared
                                           if c.ours_fingers != c.tasks_fingers]


def test_tracking_the_next_roi_finds_the_hand_again(pipeline: HandPipeline, compared: list[Compared],
                                                    hand_photos: list[tuple[Path, int]]) -> None:
    """The same photo as the next frame: the hand is found again in the ROI its landmarks gave, in place."""
    paths = {p.name: p for p, _ in hand_photos}
    found = close = total = 0
    for c in compared:
        rgb = read_rgb(paths[c.file]) if c.ours else None
        for hand in c.ours:
            total += 1
            assert rgb is not None  # c.ours is not empty
            again = pipeline.landmarks(rgb, hand.next_roi)
            if again is not None:
                found += 1
                close += float(np.median(np.hypot(*(again.landmarks[:, :2] - hand.landmarks[:, :2]).T))) < 0.02
    assert total and found == total
    # A palm-detector crop and a landmark-derived crop disagree a little on hard poses (Tasks too); the small
    # set in loadtest/hands keeps hard poses on purpose (28 of its 30 hands; 95 % and more on the 210).
    assert close >= 0.9 * total


def test_tracked_frames_match_tasks_video_mode(model_path: str, pipeline: HandPipeline,
                                               hand_photos: list[tuple[Path, int]]) -> None:
    """Tasks VIDEO mode, each photo twice after a blank frame: its second frame tracks from the first's
    landmarks, as ``landmarks(rgb, hand.next_roi)`` does."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.HandLandmarkerOptions(base_options=BaseOptions(model_asset_path=model_path),
                                           running_mode=vision.RunningMode.VIDEO, num_hands=1)
    medians: list[float] = []
    disagree: list[tuple[str, int, int]] = []
    lost: list[str] = []
    ts = 0
    with vision.HandLandmarker.create_from_options(options) as tasks:
        for path, _ in hand_photos:
            rgb = read_rgb(path)
            results = []
            for frame in (np.zeros_like(rgb), rgb, rgb):
                ts += 33
                results.append(tasks.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=frame), ts))
            assert not results[0].hand_landmarks  # the blank frame ends any track
            first = pipeline.detect(rgb, 1)
            ours = pipeline.landmarks(rgb, first[0].next_roi) if first else None
            ref = results[2]
            if ours is None or not ref.hand_landmarks:
                if (ours is None) != (not ref.hand_landmarks):
                    lost.append(path.name)
                continue
            lm = np.array([[p.x, p.y] for p in ref.hand_landmarks[0]])
            medians.append(float(np.median(np.hypot(*(ours.landmarks[:, :2] - lm).T))))
            theirs = fingers([np.array([[p.x, p.y, p.z] for p in ref.hand_world_landmarks[0]])])
            if fingers([ours.world_landmarks]) != theirs:
                disagree.append((path.name, fingers([ours.world_landmarks]), theirs))
    assert medians and float(np.median(medians)) < 0.0005
    assert len(lost) <= 0.01 * len(hand_photos), lost
    assert len(disagree) <= 0.01 * len(medians), disagree


def test_no_hand_in_an_empty_scene(pipeline: HandPipeline) -> None:
    grey = np.full((480, 640, 3), 128, np.uint8)
    assert pipeline.palms(grey, 2) == []
    assert pipeline.detect(grey, 2) == []
    assert pipeline.landmarks(grey, Roi(0.5, 0.5, 0.5, 0.66, 0.0)) is None


def test_max_hands_caps_the_palms(pipeline: HandPipeline, hand_photos: list[tuple[Path, int]]) -> None:
    rgb = read_rgb(hand_photos[0][0])
    pair = np.ascontiguousarray(np.concatenate([rgb, rgb[:, ::-1]], axis=1))
    assert len(pipeline.palms(pair, 2)) == 2
    assert len(pipeline.palms(pair, 1)) == 1
    assert pipeline.palms(pair, 0) == []
    assert len(pipeline.detect(pair, 2)) == 2


def test_rois_reach_outside_the_image(pipeline: HandPipeline, hand_photos: list[tuple[Path, int]]) -> None:
    """An ROI over the edge (or off the image) is a valid question, not an error; so is a degenerate one."""
    rgb = np.zeros((100, 80, 3), np.uint8)
    assert pipeline.landmarks(rgb, Roi(1.2, -0.3, 0.9, 0.7, 2.0)) is None
    photo, hand = next((rgb, found[0]) for rgb, found in ((read_rgb(p), pipeline.detect(read_rgb(p), 1))
                                                          for p, _ in hand_photos) if found)
    for bad in (Roi(hand.roi.cx, hand.roi.cy, 0.0, 0.0, 0.0), Roi(float("nan"), 0.5, 0.5, 0.5, 0.0),
                Roi(0.5, 0.5, -0.5, 0.5, 0.0), Roi(0.5, 0.5, 0.5, 0.5, float("inf"))):
        assert pipeline.landmarks(photo, bad) is None
    assert pipeline.landmarks(photo, hand.roi) is not None


def test_bad_input_is_a_clear_error(pipeline: HandPipeline, tmp_path: Path) -> None:
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32),
                np.zeros((0, 10, 3), np.uint8)):
        with pytest.raises(ValueError, match="RGB image"):
            pipeline.detect(bad, 2)
    with pytest.raises(ValueError, match="not a model bundle"):
        HandPipeline(_junk(tmp_path))
    with pytest.raises(FileNotFoundError):
        HandPipeline(tmp_path / "missing.task")


def _junk(folder: Path) -> Path:
    path = folder / "junk.task"
    path.write_bytes(os.urandom(64))
    return path


def test_closed_pipeline_refuses_work(model_path: str) -> None:
    p = HandPipeline(model_path)
    p.close()
    with pytest.raises(RuntimeError, match="closed"):
        p.palms(np.zeros((10, 10, 3), np.uint8), 1)
    with pytest.raises(RuntimeError, match="closed"):
        p.landmarks(np.zeros((10, 10, 3), np.uint8), Roi(0.5, 0.5, 1, 1, 0))


def test_one_pipeline_is_two_interpreters_of_memory(model_path: str) -> None:
    """A worker holds one pipeline for all its streams: it must stay small (two interpreters, tens of MB)."""
    HandPipeline(model_path).close()  # libraries loaded, allocator warmed
    before = rss_mb(os.getpid())
    pipelines = [HandPipeline(model_path) for _ in range(3)]
    each = (rss_mb(os.getpid()) - before) / 3
    for p in pipelines:
        p.detect(np.zeros((480, 640, 3), np.uint8), 2)
        p.close()
    assert each < 80, f"{each:.1f} MB per pipeline"
