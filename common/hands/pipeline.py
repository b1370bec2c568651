"""The public API of the hand pipeline: palms → hand ROIs → landmarks, and the next frame's ROI.

Work in progress: signatures are final, bodies are being filled in (issue 14).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


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


@dataclass(frozen=True)
class Hand:
    landmarks: np.ndarray  # (21, 3) float32: x, y normalised to the image, z as MediaPipe Tasks reports
    world_landmarks: np.ndarray  # (21, 3) float32, metres, as MediaPipe Tasks reports
    presence: float  # the landmark model's hand-presence score
    handedness: str  # "Left"/"Right" as MediaPipe Tasks labels it (selfie convention)
    handedness_score: float
    roi: Roi  # the ROI this hand was found in
    next_roi: Roi  # the ROI to look at in the next frame (from these landmarks)


def dedupe(tracked: list[Roi], found: list[Roi], threshold: float = 0.5) -> list[Roi]:
    """The ROIs of ``found`` that overlap no ``tracked`` ROI by IoU ≥ ``threshold`` (new hands)."""
    raise NotImplementedError


class HandPipeline:
    """The bundle's palm detector and landmark model, loaded once; holds no per-stream state."""

    def __init__(self, bundle: str | Path, *, threads: int = 1, min_detection: float = 0.5,
                 min_presence: float = 0.5) -> None:
        raise NotImplementedError

    def palms(self, rgb: np.ndarray, max_hands: int) -> list[Roi]:
        """Palm detector → hand ROIs, best first (at most ``max_hands``)."""
        raise NotImplementedError

    def landmarks(self, rgb: np.ndarray, roi: Roi) -> Hand | None:
        """One landmark-model run on ``roi``; None if the presence score is below ``min_presence``."""
        raise NotImplementedError

    def detect(self, rgb: np.ndarray, max_hands: int) -> list[Hand]:
        """A still: palms, then landmarks per ROI."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
