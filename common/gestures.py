"""Name the gesture a hand makes, from which fingers are up and a little geometry. Pure functions.

Most gestures are a pattern of raised fingers. Three need more: ``thumb_up``/``thumb_down`` look at
where the thumb points in the image (image y grows downwards), ``pointing_up`` at where the index points,
and ``ok`` at whether the thumb and index tips touch (the other three fingers up).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.fingers import as_points, palm_width

GESTURES = ("none", "fist", "one", "pointing_up", "victory", "three", "four", "open_palm", "thumb_up",
            "thumb_down", "i_love_you", "ok", "call_me")

# Raised-finger patterns (thumb, index, middle, ring, pinky) → gesture.
_PATTERNS: dict[tuple[bool, ...], str] = {
    (False, False, False, False, False): "fist",
    (False, True, False, False, False): "one",
    (False, True, True, False, False): "victory",
    (False, True, True, True, False): "three",
    (True, True, True, False, False): "three",
    (False, True, True, True, True): "four",
    (True, True, True, True, True): "open_palm",
    (True, True, False, False, True): "i_love_you",
    (True, False, False, False, True): "call_me",
}

OK_TOUCH = 0.35  # thumb tip to index tip, in palm widths
POINTING = 0.5  # |dy| / length of the direction vector above which a digit points up or down


def _vertical(image_pts: np.ndarray, base: int, tip: int) -> float:
    """+1 pointing straight up in the image, -1 straight down, ~0 sideways."""
    d = image_pts[tip, :2] - image_pts[base, :2]
    n = float(np.linalg.norm(d))
    return float(-d[1] / n) if n else 0.0


def classify(up: dict[str, bool], landmarks: Sequence[Sequence[float]],
             world_landmarks: Sequence[Sequence[float]] | None = None) -> str:
    """Gesture name for one hand. ``landmarks`` are normalised image coordinates (x right, y down)."""
    img = as_points(landmarks)
    geo = as_points(world_landmarks) if world_landmarks is not None else img
    pattern = tuple(bool(up[f]) for f in ("thumb", "index", "middle", "ring", "pinky"))

    if pattern[2:] == (True, True, True) and not pattern[1]:
        if np.linalg.norm(geo[4] - geo[8]) / palm_width(geo) < OK_TOUCH:
            return "ok"
    if pattern == (True, False, False, False, False):
        v = _vertical(img, 2, 4)
        if v > POINTING:
            return "thumb_up"
        if v < -POINTING:
            return "thumb_down"
        return "none"
    name = _PATTERNS.get(pattern, "none")
    if name == "one" and _vertical(img, 5, 8) > POINTING:
        return "pointing_up"
    return name
