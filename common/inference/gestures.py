"""Name the gesture a hand makes, from which fingers are up and a little geometry. Pure functions.

Most gestures are a pattern of raised fingers (``PATTERNS``). The others need one more fact:

* ``ok``: middle, ring and pinky up while the thumb tip touches the index tip or last joint (the
  ring). The finger rules already refuse to count a pinching thumb, so "ok" also counts 3.
* ``thumb_up`` / ``thumb_down``: only the thumb is raised, and it points within 60° of straight up
  (or down) *in the picture* — the one place where the camera's "up" matters, since that is what
  the gesture means.
* ``pointing_up``: the "one" pattern with the index pointing within 60° of straight up in the picture.

Directions use the world landmarks' x/y when present: MediaPipe keeps them aligned with the image
(y down) and, unlike normalised image coordinates, not stretched by the image's aspect ratio.
"""

from __future__ import annotations

import numpy as np

from hgr.common.inference.fingers import DEFAULT, FINGER_NAMES, Landmarks, as_points, pinch_gap

# The full, bounded set of names (a metric label): keep in sync with what classify can return.
GESTURES = ("none", "fist", "one", "pointing_up", "victory", "three", "four", "open_palm", "thumb_up",
            "thumb_down", "i_love_you", "ok", "call_me")

# Raised-finger patterns (thumb, index, middle, ring, pinky) → gesture.
PATTERNS: dict[tuple[bool, ...], str] = {
    (False, False, False, False, False): "fist",
    (False, True, False, False, False): "one",
    (False, True, True, False, False): "victory",
    (False, True, True, True, False): "three",
    (True, True, True, False, False): "three",
    (False, False, True, True, True): "three",  # the "W" three (or an "ok" whose ring is not closed)
    (False, True, True, True, True): "four",
    (True, True, True, True, True): "open_palm",
    (True, True, False, False, True): "i_love_you",
    (True, False, False, False, True): "call_me",
}
THUMB_ONLY = (True, False, False, False, False)
# sin(30°): a digit "points up" when it is within 60° of vertical in the picture.
POINTING = 0.5


def vertical(pts: np.ndarray, base: int, tip: int) -> float:
    """+1 when base→tip points straight up in the picture, -1 straight down, ~0 sideways or at the camera."""
    d = pts[tip, :2] - pts[base, :2]
    n = float(np.linalg.norm(d))
    return float(-d[1] / n) if n > 1e-12 else 0.0


def classify(up: dict[str, bool], landmarks: Landmarks, world_landmarks: Landmarks | None = None) -> str:
    """Gesture name (one of ``GESTURES``) for one hand.

    ``up``: ``fingers_up(...)``; ``landmarks``: normalised image coordinates (x right, y down);
    ``world_landmarks``: metres, preferred for geometry when given.
    """
    geo = as_points(world_landmarks) if world_landmarks is not None else as_points(landmarks)
    pattern = tuple(bool(up[f]) for f in FINGER_NAMES)

    if pattern[2:] == (True, True, True) and pinch_gap(geo) < DEFAULT.pinch_max_gap:
        return "ok"
    if pattern == THUMB_ONLY:
        v = vertical(geo, 2, 4)  # thumb MCP → tip
        return "thumb_up" if v > POINTING else "thumb_down" if v < -POINTING else "none"
    name = PATTERNS.get(pattern, "none")
    if name == "one" and vertical(geo, 5, 8) > POINTING:  # index MCP → tip
        return "pointing_up"
    return name
