"""The hand pipeline's API: palms → hand ROIs → landmarks, and each hand's ROI for the next frame.

One ``HandPipeline`` per worker process, shared by all its streams: it holds the bundle's two models
(LiteRT or OpenVINO, ``INFERENCE_RUNTIME``) and nothing per stream. A stream tracks hands by keeping
``Hand.next_roi`` and passing it to ``landmarks`` on its next frame; ``dedupe`` tells which detector ROIs are new hands.
Not thread-safe (the interpreters are reused): one caller at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hgr.common.inference.hands import association, crop, landmarks, palms
from hgr.common.inference.hands.bundle import ModelRunner, load_models
from hgr.common.inference.hands.roi import Roi, landmarks_to_roi, palm_to_roi
from hgr.common.inference.hands.runtime import REFERENCE, Choice

__all__ = ["Hand", "HandPipeline", "Roi", "dedupe"]


@dataclass(frozen=True)
class Hand:
    landmarks: np.ndarray  # (21, 3) float32: x, y normalised to the image, z as MediaPipe Tasks reports
    world_landmarks: np.ndarray  # (21, 3) float32, metres, as MediaPipe Tasks reports
    presence: float  # the landmark model's hand-presence score
    handedness: str  # "Left"/"Right" as MediaPipe Tasks labels it (selfie convention)
    handedness_score: float
    roi: Roi  # the ROI this hand was found in
    next_roi: Roi  # the ROI to look at in the next frame (from these landmarks)


def dedupe(tracked: list[Roi], found: list[Roi], threshold: float = association.MIN_SIMILARITY) -> list[Roi]:
    """The ROIs of ``found`` that are new hands: IoU ≤ ``threshold`` with every tracked ROI (and each other)."""
    return association.new_rois(tracked, found, threshold)


def _check_image(rgb: np.ndarray) -> tuple[int, int]:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"expected an H×W×3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    return rgb.shape[1], rgb.shape[0]


def _usable(roi: Roi) -> bool:
    values = (roi.cx, roi.cy, roi.w, roi.h, roi.rotation)
    return all(math.isfinite(v) for v in values) and roi.w > 0 and roi.h > 0


class HandPipeline:
    """The bundle's palm detector and landmark model, loaded once; holds no per-stream state."""

    def __init__(self, bundle: str | Path, *, threads: int = 1, min_detection: float = 0.5,
                 min_presence: float = 0.5, choice: Choice = REFERENCE) -> None:
        models = load_models(bundle, threads, choice)
        self.choice = models.choice  # what runs (OpenVINO without bf16 arithmetic runs fp32 whatever was asked)
        self._palm: ModelRunner | None = models.palm
        self._palm_input = int(models.palm.get_input_details()[0]["index"])
        self._palm_outputs = [int(d["index"]) for d in models.palm.get_output_details()]
        self._landmark: landmarks.LandmarkModel | None = landmarks.LandmarkModel(models.landmark)
        self._palm_crop = crop.Cropper(palms.INPUT_SIZE)
        self._landmark_crop = crop.Cropper(landmarks.INPUT_SIZE)
        self.min_detection = min_detection
        self.min_presence = min_presence

    def palms(self, rgb: np.ndarray, max_hands: int) -> list[Roi]:
        """Palm detector → hand ROIs, best first (at most ``max_hands``)."""
        width, height = _check_image(rgb)
        if self._palm is None:
            raise RuntimeError("hand pipeline is closed")
        if max_hands < 1:
            return []
        box = crop.letterbox(width, height)
        self._palm.set_tensor(self._palm_input, self._palm_crop(rgb, box, zero_border=True))
        self._palm.invoke()
        raw_boxes, raw_scores = (self._palm.get_tensor(i) for i in self._palm_outputs)
        found = palms.weighted_nms(palms.decode(raw_boxes, raw_scores, self.min_detection))[:max_hands]
        rois = []
        for palm in found:
            # DetectionProjectionCalculator: from the letterboxed square back to the image.
            corners = crop.project(palm.box.reshape(2, 2), box)
            rois.append(palm_to_roi(corners.reshape(4), crop.project(palm.keypoints, box), width, height))
        return rois

    def landmarks(self, rgb: np.ndarray, roi: Roi, min_presence: float | None = None) -> Hand | None:
        """One landmark-model run on ``roi``; None unless the presence score exceeds ``min_presence``
        (the pipeline's own unless given).

        (Strictly, as MediaPipe's ThresholdingCalculator.)
        """
        width, height = _check_image(rgb)
        if self._landmark is None:
            raise RuntimeError("hand pipeline is closed")
        if not _usable(roi):
            return None  # nothing to look at (a caller's stale or corrupted ROI must not stop its worker)
        out = self._landmark.run(self._landmark_crop(rgb, roi, zero_border=False))
        if not out.presence > (self.min_presence if min_presence is None else min_presence):
            return None
        points = crop.project(out.landmarks, roi)
        label, score = landmarks.handedness(out.right)
        return Hand(points, crop.rotate_world(out.world, roi.rotation), out.presence, label, score, roi,
                    landmarks_to_roi(points, width, height))

    def detect(self, rgb: np.ndarray, max_hands: int, min_presence: float | None = None) -> list[Hand]:
        """A still: palms, then landmarks per ROI (duplicates of one hand dropped), as Tasks' IMAGE mode does.

        ``min_presence`` overrides the pipeline's own threshold: one pipeline serves a worker's streams (kept
        while above the tracking threshold) and its stills (Tasks' ``min_hand_presence_confidence``).
        """
        width, height = _check_image(rgb)
        hands = [h for h in (self.landmarks(rgb, roi, min_presence) for roi in self.palms(rgb, max_hands))
                 if h is not None]
        dropped = association.duplicates([h.landmarks for h in hands], width, height)
        return [h for i, h in enumerate(hands) if i not in dropped]

    def close(self) -> None:
        """Drop the interpreters (their memory goes with the last reference)."""
        self._palm = None
        self._landmark = None
