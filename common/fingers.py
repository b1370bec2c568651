"""Which fingers are raised, from 21 hand landmarks. Pure functions, no I/O.

The tutorial rule "tip above PIP in image y" only works for an upright palm facing the camera. Here
every test is a 3D geometric property of the hand itself (joint angles, distances relative to the
palm), so it does not change when the hand is rotated, tilted, pointed down, or shows its back:

* index..pinky: a finger is up when its chain MCP→PIP→DIP→TIP is nearly straight (the tip is almost as
  far from the MCP as the summed bone lengths) *and* it is not folded over at the knuckle (the angle
  between the palm's direction and the finger's first bone is small).
* thumb: it has no PIP and bends mostly at its base, so its rule is its own: the thumb is up when its
  last two bones are fairly straight and its tip lies well away from the palm (from the index
  knuckle and from the palm's centre line), measured in palm widths.

World landmarks (metric, camera-independent) are preferred when available; normalised image
landmarks work too, since only ratios and angles are used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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


@dataclass(frozen=True)
class Thresholds:
    """Tuned on ../shared/data/hands (see docs/accuracy.md); angles in degrees."""

    finger_straightness: float = 0.80  # |TIP-MCP| / bone lengths, for index..pinky
    finger_max_knuckle_bend: float = 75.0  # palm direction vs first bone
    thumb_straightness: float = 0.85  # |TIP-MCP| / bone lengths MCP→IP→TIP
    thumb_min_tip_to_index_mcp: float = 0.55  # in palm widths
    thumb_min_out_of_palm: float = 0.25  # tip's distance from the palm's centre line, in palm widths


DEFAULT = Thresholds()


def as_points(landmarks: Sequence[Sequence[float]]) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (21, 3):
        raise ValueError(f"expected 21×3 landmarks, got {pts.shape}")
    return pts


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return 0.0
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))))


def straightness(pts: np.ndarray, chain: Sequence[int]) -> float:
    """1.0 for a straight chain of joints, smaller the more it curls."""
    bones = sum(float(np.linalg.norm(pts[b] - pts[a])) for a, b in zip(chain, chain[1:]))
    return float(np.linalg.norm(pts[chain[-1]] - pts[chain[0]])) / bones if bones else 0.0


def palm_width(pts: np.ndarray) -> float:
    return float(np.linalg.norm(pts[5] - pts[17])) or 1e-9


def finger_up(pts: np.ndarray, name: str, t: Thresholds = DEFAULT) -> bool:
    mcp, pip, dip, tip = CHAINS[name]
    if straightness(pts, (mcp, pip, dip, tip)) < t.finger_straightness:
        return False
    knuckle_bend = _angle(pts[mcp] - pts[WRIST], pts[pip] - pts[mcp])
    return knuckle_bend <= t.finger_max_knuckle_bend


def thumb_up(pts: np.ndarray, t: Thresholds = DEFAULT) -> bool:
    width = palm_width(pts)
    if straightness(pts, (2, 3, 4)) < t.thumb_straightness:
        return False
    if np.linalg.norm(pts[4] - pts[5]) / width < t.thumb_min_tip_to_index_mcp:
        return False
    # Distance of the tip from the line wrist→middle MCP (the palm's axis): a thumb folded across the
    # palm lies on it, an extended one stands out to the side.
    axis = pts[9] - pts[WRIST]
    rel = pts[4] - pts[WRIST]
    off_axis = np.linalg.norm(rel - axis * (np.dot(rel, axis) / (np.dot(axis, axis) or 1e-9)))
    return off_axis / width >= t.thumb_min_out_of_palm


def fingers_up(landmarks: Sequence[Sequence[float]], t: Thresholds = DEFAULT) -> dict[str, bool]:
    """{thumb, index, middle, ring, pinky} → raised?"""
    pts = as_points(landmarks)
    out = {"thumb": thumb_up(pts, t)}
    for name in FINGER_NAMES[1:]:
        out[name] = finger_up(pts, name, t)
    return out


def count_fingers(up: dict[str, bool]) -> int:
    return sum(bool(v) for v in up.values())
