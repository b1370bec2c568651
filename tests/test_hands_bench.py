"""The ``pipeline`` bench section runs end to end (one round) and reports every call kind; no speed asserted."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from research.pipeline import decode, measure


def _read(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return bgr


def test_pipeline_section_reports_each_call(model_path: str, hand_photos: list[tuple[Path, int]]) -> None:
    frames = [cv2.imencode(".jpg", _read(p))[1].tobytes() for p, _ in hand_photos[:6]]
    images = decode(frames + frames[:2])  # repeated frames are measured once
    assert len(images) == 6 and all(i.ndim == 3 and i.shape[2] == 3 for i in images)
    out = measure(model_path, images, duration=0)
    assert out["rounds"] == 1 and 1 <= out["photos"] <= 6
    kinds = {"palms", "landmarks", "detect", "tracked", "tasks_image", "tasks_video_1_hand", "tasks_video_2_hands"}
    assert set(out["per_call_ms"]) == kinds
    assert all(v["p50"] > 0 for v in out["per_call_ms"].values())
    assert all(np.isfinite(r) and r > 0 for r in out["ratios_of_medians"].values())
    # An RSS delta: freed memory of earlier tests may be reused, so only the upper side is meaningful here.
    assert out["memory_mb"]["hand_pipeline"] < 150
