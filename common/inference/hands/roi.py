"""Rotated rectangles (ROIs) and the palm → hand and landmarks → next-frame ROI rules. Pure maths.

Coordinates are normalised to the image (x right, y down); a rotation is in radians, clockwise on the
screen, as MediaPipe's ``NormalizedRect``. Each rule is a transcription of the MediaPipe calculator named
in its docstring, with the options MediaPipe Tasks configures (hand_detector_graph.cc and
hand_landmarks_detector_graph.cc).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# DetectionsToRectsCalculator (hand_detector_graph.cc): the palm's wrist→middle-MCP vector sets the rotation.
PALM_ROTATION_KEYPOINTS = (0, 2)
# Tasks sets `rotation_vector_target_angle(90)`, a field in *radians* (the degrees field is a different one),
# so the palm ROI's target angle is 90 rad ≡ 116.6°, not π/2. Reproduced because the landmark model is run
# on exactly that crop by Tasks: with π/2 our landmarks differed from Tasks' by 0.5 % of the image at the
# median and finger counts by 5 % of photos; with 90 rad by 0.03 %.
PALM_TARGET_ANGLE = 90.0
# HandLandmarksToRectCalculator's kTargetAngle is a true right angle.
TARGET_ANGLE = math.pi / 2
# RectTransformationCalculator after the palm detector: grow the palm box to cover the whole hand.
PALM_TO_HAND_SCALE, PALM_TO_HAND_SHIFT_Y = 2.6, -0.5
# hand_landmarks_detector_graph.cc: next frame's ROI from this frame's landmarks.
NEXT_ROI_SCALE, NEXT_ROI_SHIFT_Y = 2.0, -0.1
# HandLandmarksToRectCalculator: landmarks the next ROI is built from (the palm and the finger bases) and,
# as indices into that subset, the wrist and the index, middle and ring MCPs that give its rotation.
NEXT_ROI_LANDMARKS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)
WRIST, INDEX_MCP, MIDDLE_MCP, RING_MCP = 0, 5, 9, 13


@dataclass(frozen=True)
class Roi:
    """A rotated rectangle in normalised image coordinates (x right, y down).

    ``w`` and ``h`` are fractions of the image width and height; ``rotation`` is in radians.
    """

    cx: float
    cy: float
    w: float
    h: float
    rotation: float


def normalize_radians(angle: float) -> float:
    """``angle`` in [-π, π) (MediaPipe's NormalizeRadians)."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def rotation_of(start: tuple[float, float], end: tuple[float, float], width: int, height: int,
                target: float = TARGET_ANGLE) -> float:
    """The rotation that turns the vector start→end (normalised points) to ``target`` (π/2: upright), in pixels."""
    dx = (end[0] - start[0]) * width
    dy = (end[1] - start[1]) * height
    return normalize_radians(target - math.atan2(-dy, dx))


def transform(roi: Roi, width: int, height: int, *, scale: float, shift_y: float) -> Roi:
    """RectTransformationCalculator with ``square_long``: shift along the ROI's own axes, square, scale."""
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    # shift_x is 0 in both of MediaPipe's uses, so only the y shift is kept.
    cx = roi.cx - height * roi.h * shift_y * s / width
    cy = roi.cy + height * roi.h * shift_y * c / height
    long_side = max(roi.w * width, roi.h * height)
    return Roi(cx, cy, long_side / width * scale, long_side / height * scale, roi.rotation)


def palm_to_roi(box: np.ndarray, keypoints: np.ndarray, width: int, height: int) -> Roi:
    """Hand ROI from a palm detection: ``box`` (xmin, ymin, xmax, ymax) and ``keypoints`` (7, 2), normalised.

    DetectionsToRectsCalculator (rotation from wrist to middle-finger MCP, target "90", see PALM_TARGET_ANGLE),
    then RectTransformationCalculator (scale 2.6, shift_y -0.5, square_long).
    """
    start, end = keypoints[PALM_ROTATION_KEYPOINTS[0]], keypoints[PALM_ROTATION_KEYPOINTS[1]]
    rotation = rotation_of((float(start[0]), float(start[1])), (float(end[0]), float(end[1])), width, height,
                           PALM_TARGET_ANGLE)
    palm = Roi(float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2, float(box[2] - box[0]),
               float(box[3] - box[1]), rotation)
    return transform(palm, width, height, scale=PALM_TO_HAND_SCALE, shift_y=PALM_TO_HAND_SHIFT_Y)


def landmarks_to_roi(landmarks: np.ndarray, width: int, height: int) -> Roi:
    """Next frame's ROI from 21 normalised landmarks (x, y used).

    HandLandmarksToRectCalculator (the rectangle around the palm landmarks, aligned with the hand), then
    RectTransformationCalculator (scale 2.0, shift_y -0.1, square_long).
    """
    pts = np.asarray(landmarks, np.float64)[list(NEXT_ROI_LANDMARKS), :2]
    wrist = pts[NEXT_ROI_LANDMARKS.index(WRIST)]
    fingers = [pts[NEXT_ROI_LANDMARKS.index(i)] for i in (INDEX_MCP, MIDDLE_MCP, RING_MCP)]
    end = ((fingers[0] + fingers[2]) / 2 + fingers[1]) / 2
    rotation = rotation_of((float(wrist[0]), float(wrist[1])), (float(end[0]), float(end[1])), width, height)
    # The bounds of the landmarks in the hand's own (rotated) frame, in pixels around the axis-aligned centre.
    centre = (pts.max(axis=0) + pts.min(axis=0)) / 2
    size = np.array([width, height], np.float64)
    px = (pts - centre) * size
    back = normalize_radians(-rotation)
    cb, sb = math.cos(back), math.sin(back)
    proj = np.stack([px[:, 0] * cb - px[:, 1] * sb, px[:, 0] * sb + px[:, 1] * cb], axis=1)
    lo, hi = proj.min(axis=0), proj.max(axis=0)
    mid = (lo + hi) / 2
    c, s = math.cos(rotation), math.sin(rotation)
    cx = (mid[0] * c - mid[1] * s) / width + centre[0]
    cy = (mid[0] * s + mid[1] * c) / height + centre[1]
    rect = Roi(float(cx), float(cy), float(hi[0] - lo[0]) / width, float(hi[1] - lo[1]) / height, rotation)
    return transform(rect, width, height, scale=NEXT_ROI_SCALE, shift_y=NEXT_ROI_SHIFT_Y)


def bounds(roi: Roi, width: int, height: int) -> tuple[float, float, float, float]:
    """The axis-aligned box (x0, y0, x1, y1) around the rotated ROI, normalised (``width``×``height`` pixels
    set the aspect the rotation turns in)."""
    c, s = abs(math.cos(roi.rotation)), abs(math.sin(roi.rotation))
    w, h = roi.w * width, roi.h * height
    half_x = (w * c + h * s) / 2 / width
    half_y = (w * s + h * c) / 2 / height
    return roi.cx - half_x, roi.cy - half_y, roi.cx + half_x, roi.cy + half_y


def iou(a: Roi, b: Roi) -> float:
    """Intersection over union of two ROIs as axis-aligned boxes (MediaPipe's DoesRectOverlap ignores rotation)."""
    ix = min(a.cx + a.w / 2, b.cx + b.w / 2) - max(a.cx - a.w / 2, b.cx - b.w / 2)
    iy = min(a.cy + a.h / 2, b.cy + b.h / 2) - max(a.cy - a.h / 2, b.cy - b.h / 2)
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0
