"""Which fingers are raised, from 21 hand landmarks. Pure functions, no I/O.

The tutorial rule "tip above PIP in image y" only works for an upright palm facing the camera; it
fails for tilted, sideways, downward and back-of-hand poses (about 80% on our labelled photos).
Here every quantity is measured in the hand's own frame, so a count does not depend on how the hand
is rotated, which side faces the camera, whether it is a left or a right hand (a mirror image), or
how large it is:

* **palm frame** (``palm_frame``): origin at the wrist, ``y`` from the wrist to the middle knuckle,
  ``x`` across the palm from the pinky knuckle to the index knuckle, ``z`` the palm's normal;
  lengths in *palm widths* (index knuckle to pinky knuckle).
* **index..pinky** (``finger_curl``): the angle between the finger's metacarpal (wrist → MCP) and its
  last bone (DIP → TIP). A straight finger points its last bone the same way as its metacarpal
  (0-60°); a folded one points it back towards the palm (over 140°). 90° — the last bone at right
  angles to the back of the hand — is the natural boundary. Measuring against the finger's own
  metacarpal, not image "up", is what makes sideways and downward hands work; using the last bone
  rather than the whole chain tolerates a finger that is straight but bent a little at the knuckle.
* **thumb** (``thumb_reach_out``): it has no PIP and folds mostly at its base, sliding *across* the
  palm, so its own rule is where its tip lies sideways: an extended thumb sticks out beyond the index
  knuckle (x > index knuckle's x + a quarter palm width); a tucked thumb (fist, "four") stays within
  the palm's width, in front of or across it.
* **pinch** (``pinch_gap``): a thumb whose tip rests on the index's tip or last joint closes a ring
  (the "ok" sign) or holds the index down; it is not raised even if it sticks out sideways.

World landmarks (metres, same orientation as the image) are what the engine passes; normalised image
landmarks work too but are less exact (x and y are scaled by different image sides).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# 21 (x, y, z) points: lists (as in a JSON result) or an array (as the engines give them).
Landmarks = Sequence[Sequence[float]] | np.ndarray

FINGER_NAMES = ("thumb", "index", "middle", "ring", "pinky")
WRIST = 0
# (MCP, PIP, DIP, TIP) for the four long fingers; the thumb is (CMC, MCP, IP, TIP).
CHAINS = {
    "thumb": (1, 2, 3, 4),
    "index": (5, 6, 7, 8),
    "middle": (9, 10, 11, 12),
    "ring": (13, 14, 15, 16),
    "pinky": (17, 18, 19, 20),
}
THUMB_TIP, INDEX_MCP, INDEX_DIP, INDEX_TIP, MIDDLE_MCP, PINKY_MCP = 4, 5, 7, 8, 9, 17


@dataclass(frozen=True)
class Thresholds:
    """Geometric boundaries, each a round value with a physical meaning (see the module docstring).

    Accuracy is flat around each of them (docs/accuracy.md: hold-out and sensitivity), so they are not
    fitted to our 210 photos.
    """

    finger_max_curl_deg: float = 90.0  # metacarpal vs last bone; beyond a right angle = folded
    thumb_min_reach_out: float = 0.25  # thumb tip beyond the index knuckle, sideways, in palm widths
    pinch_max_gap: float = 0.5  # thumb tip to index tip/DIP, in palm widths: touching → not raised


DEFAULT = Thresholds()


@dataclass(frozen=True)
class Measurements:
    """The rotation-, mirror- and scale-invariant quantities the decisions are made from."""

    curl_deg: dict[str, float]  # index..pinky
    thumb_reach_out: float  # palm widths
    pinch_gap: float  # palm widths


def as_points(landmarks: Landmarks) -> np.ndarray:
    """21×3 float array; ValueError for any other shape or a non-finite value."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (21, 3):
        raise ValueError(f"expected 21×3 landmarks, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("landmarks must be finite numbers")
    return pts


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else np.zeros_like(v)


def angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    """Angle between two vectors; 180 when either has no length (a collapsed finger is not a raised one)."""
    a, b = _unit(u), _unit(v)
    if not a.any() or not b.any():
        return 180.0
    return float(np.degrees(np.arccos(np.clip(float(np.dot(a, b)), -1.0, 1.0))))


def palm_width(pts: np.ndarray) -> float:
    """Index knuckle to pinky knuckle: the hand's own unit of length (never 0)."""
    return float(np.linalg.norm(pts[INDEX_MCP] - pts[PINKY_MCP])) or 1e-9


def palm_frame(pts: np.ndarray) -> np.ndarray:
    """The landmarks in the palm frame (rows x, y, z per point), in palm widths.

    ``x`` runs from the pinky side to the index side whichever hand it is, so a mirrored (left) hand
    gets the same x and y as the right hand it mirrors; only the sign of z differs, and no rule uses it.
    """
    frame: np.ndarray = (pts - pts[WRIST]) @ palm_axes(pts).T / palm_width(pts)
    return frame


def palm_axes(pts: np.ndarray) -> np.ndarray:
    """Rows: the palm frame's unit x (pinky → index), y (wrist → middle knuckle) and z (normal)."""
    y = _unit(pts[MIDDLE_MCP] - pts[WRIST])
    across = pts[INDEX_MCP] - pts[PINKY_MCP]
    x = _unit(across - y * np.dot(across, y))
    return np.stack([x, y, np.cross(x, y)])


def finger_curl(pts: np.ndarray, name: str) -> float:
    """Degrees between the finger's metacarpal (wrist → MCP) and its last bone (DIP → TIP)."""
    mcp, _pip, dip, tip = CHAINS[name]
    return angle_deg(pts[mcp] - pts[WRIST], pts[tip] - pts[dip])


def thumb_reach_out(pts: np.ndarray) -> float:
    """How far the thumb tip lies beyond the index knuckle, across the palm, in palm widths."""
    frame = palm_frame(pts)
    return float(frame[THUMB_TIP, 0] - frame[INDEX_MCP, 0])


def pinch_gap(pts: np.ndarray) -> float:
    """Thumb tip to the nearer of the index tip and the index's last joint, in palm widths."""
    gap = min(np.linalg.norm(pts[THUMB_TIP] - pts[joint]) for joint in (INDEX_TIP, INDEX_DIP))
    return float(gap) / palm_width(pts)


def measure(landmarks: Landmarks) -> Measurements:
    pts = as_points(landmarks)
    return Measurements(
        curl_deg={name: finger_curl(pts, name) for name in FINGER_NAMES[1:]},
        thumb_reach_out=thumb_reach_out(pts),
        pinch_gap=pinch_gap(pts),
    )


def decide(m: Measurements, t: Thresholds = DEFAULT) -> dict[str, bool]:
    """{thumb, index, middle, ring, pinky} → raised?, from measurements (split out so tuning and
    hold-out checks can measure once and try many thresholds)."""
    thumb = m.thumb_reach_out >= t.thumb_min_reach_out and m.pinch_gap >= t.pinch_max_gap
    return {"thumb": thumb, **{name: m.curl_deg[name] < t.finger_max_curl_deg for name in FINGER_NAMES[1:]}}


def fingers_up(landmarks: Landmarks, t: Thresholds = DEFAULT) -> dict[str, bool]:
    """{thumb, index, middle, ring, pinky} → raised? ``landmarks``: 21 [x, y, z], world or image."""
    return decide(measure(landmarks), t)


def count_fingers(up: dict[str, bool]) -> int:
    return sum(bool(v) for v in up.values())
