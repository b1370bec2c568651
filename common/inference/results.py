"""The common result schema, built from any engine's hands (LiteRT pipeline or MediaPipe Tasks).

One schema serves every transport (CLI, WebSocket, REST, MQTT)::

    {"hands": [{"handedness": "Left"|"Right", "score": float,
                "landmarks": [[x, y, z] × 21],        # normalised to the image, x right, y down
                "world_landmarks": [[x, y, z] × 21],  # metres, origin at the hand's centre
                "bbox": [x_min, y_min, x_max, y_max], # normalised
                "fingers_up": {"thumb": bool, ...}, "fingers": int, "gesture": str}, ...],
     "total_fingers": int, "image_size": [width, height],
     "timing": {"decode_ms": float, "infer_ms": float, "total_ms": float},
     "retry": "darker"|"brighter"}  # only on a still whose hands were found on an exposure bracket

Handedness is the person's own hand. MediaPipe labels hands as if the picture were a mirrored selfie;
ordinary camera frames and photos are not mirrored, so by default the label is swapped. A client that
sends mirrored frames says so with the option ``mirrored: true``.

Pure (numpy and the finger rules): no model runtime is imported here, so the stream pipeline and the
LiteRT stills never load MediaPipe for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hgr.common.contracts import DetectionResult, HandResult
from hgr.common.inference.fingers import count_fingers, fingers_up
from hgr.common.inference.gestures import classify
from hgr.common.inference.images import EXPOSURE_BRACKETS

# The ``retry`` field of a still whose hands were found only on an exposure bracket (EXPOSURE_RETRY).
RETRY_NAMES = {gamma: "darker" if gamma > 1 else "brighter" for gamma in EXPOSURE_BRACKETS}

Points = Sequence[Sequence[float]] | np.ndarray  # 21 × (x, y, z)


def _r(v: float) -> float:
    # Six decimals is far below landmark noise and halves the payload versus full floats.
    return round(float(v), 6)


def hand_to_dict(landmarks: Points, world: Points | None, label: str, score: float, mirrored: bool) -> HandResult:
    """One hand in the result schema, from any engine: ``label`` is MediaPipe's (selfie convention)."""
    lm = [[_r(x), _r(y), _r(z)] for x, y, z in _rows(landmarks)]
    wl = [[_r(x), _r(y), _r(z)] for x, y, z in _rows(world)] if world is not None and len(world) else None
    if not mirrored:
        label = {"Left": "Right", "Right": "Left"}.get(label, label)
    # Plain bools: the result is serialised as JSON/msgpack, which do not know numpy types.
    up = {name: bool(v) for name, v in fingers_up(wl or lm).items()}
    xs, ys = [p[0] for p in lm], [p[1] for p in lm]
    return {
        "handedness": label,
        "score": _r(score),
        "landmarks": lm,
        "world_landmarks": wl,
        "bbox": [_clamp(min(xs)), _clamp(min(ys)), _clamp(max(xs)), _clamp(max(ys))],
        "fingers_up": up,
        "fingers": count_fingers(up),
        "gesture": classify(up, lm, wl),
    }


def _clamp(v: float) -> float:
    return _r(min(1.0, max(0.0, v)))


def _rows(points: Points) -> Sequence[Sequence[float]]:
    return points.tolist() if isinstance(points, np.ndarray) else points


def sort_hands(hands: list[HandResult]) -> list[HandResult]:
    # Left to right in the image, so clients can match hands across frames without guessing.
    hands.sort(key=lambda h: h["bbox"][0])
    return hands


def make_result(hands: list[HandResult], image_size: tuple[int, int], decode_ms: float,
                infer_ms: float, total_ms: float) -> DetectionResult:
    return {
        "hands": hands,
        "total_fingers": sum(h["fingers"] for h in hands),
        "image_size": list(image_size),
        "timing": {"decode_ms": round(decode_ms, 3), "infer_ms": round(infer_ms, 3), "total_ms": round(total_ms, 3)},
    }
