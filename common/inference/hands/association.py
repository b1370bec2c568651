"""Which ROIs and hands are the same hand: detector ROIs against tracked ones, and duplicate landmark sets.

``new_rois`` is HandAssociationCalculator (min_similarity_threshold 0.5): a detector ROI is new unless it
overlaps a kept ROI. ``duplicates`` is HandLandmarksDeduplicationCalculator, which Tasks applies to its
hands: two hands are one if at least 10 of 21 landmarks lie within a fifth of the hand's size and their
landmark boxes overlap (IoU > 0.2).
"""

from __future__ import annotations

import numpy as np

from hgr.common.inference.hands.roi import Roi, iou

MIN_SIMILARITY = 0.5
DUPLICATE_DISTANCE = 0.2  # kAllowedBaselineDistanceRatio, of the hand's baseline (wrist, index and pinky MCPs)
DUPLICATE_MATCHES = 10  # kNumMatchedLandmarksToSuppressHand
DUPLICATE_IOU = 0.2  # kMinIouThresholdToSuppressHand


def new_rois(tracked: list[Roi], found: list[Roi], threshold: float = MIN_SIMILARITY) -> list[Roi]:
    """The ROIs of ``found`` that overlap (IoU > ``threshold``) neither a tracked ROI nor an earlier new one."""
    kept = list(tracked)
    new: list[Roi] = []
    for roi in found:
        if all(iou(roi, other) <= threshold for other in kept):
            kept.append(roi)
            new.append(roi)
    return new


def _baseline(points: np.ndarray) -> float:
    wrist, index, pinky = points[0], points[5], points[17]
    return float(max(np.linalg.norm(wrist - index), np.linalg.norm(index - pinky), np.linalg.norm(pinky - wrist)))


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    lo, hi = np.maximum(a.min(axis=0), b.min(axis=0)), np.minimum(a.max(axis=0), b.max(axis=0))
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = float(np.prod(a.max(axis=0) - a.min(axis=0)) + np.prod(b.max(axis=0) - b.min(axis=0))) - inter
    return inter / union if union > 0 else 0.0


def duplicates(hands: list[np.ndarray], width: int, height: int) -> set[int]:
    """Indices of landmark sets ((21, 2+) normalised) that repeat an earlier kept one."""
    size = np.array([width, height], np.float64)
    pixels = [np.asarray(h, np.float64)[:, :2] * size for h in hands]
    normalised = [np.asarray(h, np.float64)[:, :2] for h in hands]
    kept: list[int] = []
    dropped: set[int] = set()
    for i, p in enumerate(pixels):
        for j in kept:
            limit = max(_baseline(p), _baseline(pixels[j])) * DUPLICATE_DISTANCE
            matched = int((np.linalg.norm(p - pixels[j], axis=1) < limit).sum())
            if matched >= DUPLICATE_MATCHES and _box_iou(normalised[i], normalised[j]) > DUPLICATE_IOU:
                dropped.add(i)
                break
        else:
            kept.append(i)
    return dropped
