"""MediaPipe Tasks' Hand Landmarker: the reference engine and the documented fallback (``STREAM_PIPELINE=mediapipe``).

One landmarker in IMAGE mode per (model, num_hands) for stills, and one in VIDEO mode per stream (tracking
across frames skips the palm detector while hands stay in view). VIDEO timestamps must strictly increase per
landmarker; this class guarantees that whatever clock the client uses.

Only ``common.inference.engine`` imports this module, and only when the fallback is chosen: the default path
(the LiteRT pipeline in ``common.inference.hands``) never loads MediaPipe into a serving process. The tests
use it as the reference the pipeline is held to (tests/test_engine_parity.py).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

from hgr.common.config import Settings
from hgr.common.contracts import HandResult
from hgr.common.inference.results import hand_to_dict, sort_hands
from hgr.common.options import DetectOptions, check_model


def _xyz(landmarks: Any) -> list[list[float]]:
    """MediaPipe Tasks' landmark objects as rows of (x, y, z)."""
    return [[p.x, p.y, p.z] for p in landmarks]


def result_to_hands(result: Any, mirrored: bool) -> list[HandResult]:
    world = result.hand_world_landmarks
    return sort_hands([hand_to_dict(_xyz(lm), _xyz(world[i]) if world else None, result.handedness[i][0].category_name,
                                    result.handedness[i][0].score, mirrored)
                       for i, lm in enumerate(result.hand_landmarks)])


class TasksLandmarkers:
    """The landmarkers of one process. Not thread-safe: one per worker process or thread."""

    def __init__(self, settings: Settings, model_paths: dict[str, str], *, max_streams: int = 256) -> None:
        self.settings = settings
        self.model_paths = model_paths
        self._image: dict[tuple[str, int], vision.HandLandmarker] = {}
        self._video: OrderedDict[Any, tuple[vision.HandLandmarker, int]] = OrderedDict()
        self._max_streams = max_streams

    def _create(self, opts: DetectOptions, video: bool) -> vision.HandLandmarker:
        check_model(opts.model, self.model_paths)
        s = self.settings
        return vision.HandLandmarker.create_from_options(vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=self.model_paths[opts.model]),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_hands=opts.num_hands,
            min_hand_detection_confidence=s.min_hand_detection_confidence,
            min_hand_presence_confidence=s.min_hand_presence_confidence,
            min_tracking_confidence=s.min_tracking_confidence,
        ))

    def detect(self, rgb: np.ndarray, opts: DetectOptions, stream: Any = None) -> list[HandResult]:
        """An upright RGB image: IMAGE mode, or VIDEO mode with tracking when ``stream`` is set."""
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        if stream is None:
            key = (opts.model, opts.num_hands)
            landmarker = self._image.get(key) or self._image.setdefault(key, self._create(opts, video=False))
            return result_to_hands(landmarker.detect(image), opts.mirrored)
        video_key = (stream, opts.model, opts.num_hands)
        landmarker, last_ts = self._video.pop(video_key, (None, -1))
        if landmarker is None:
            landmarker = self._create(opts, video=True)
            self._evict()
        ts = max(last_ts + 1, int(time.monotonic() * 1000))
        try:
            result = landmarker.detect_for_video(image, ts)
        finally:
            self._video[video_key] = (landmarker, ts)
        return result_to_hands(result, opts.mirrored)

    def close_stream(self, stream: Any) -> None:
        for key in [k for k in self._video if k[0] == stream]:
            self._video.pop(key)[0].close()

    def _evict(self) -> None:
        while len(self._video) >= self._max_streams:
            _, (landmarker, _) = self._video.popitem(last=False)
            landmarker.close()

    def close(self) -> None:
        for landmarker in self._image.values():
            landmarker.close()
        for landmarker, _ in self._video.values():
            landmarker.close()
        self._image.clear()
        self._video.clear()
