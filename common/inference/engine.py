"""The detection engine: MediaPipe Hand Landmarker in, the common result schema out.

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

``Detector`` owns landmarkers: one in IMAGE mode for stills, and one per stream in VIDEO mode (tracking
across frames skips the palm detector while hands stay in view). VIDEO timestamps must strictly
increase per landmarker; the detector guarantees that whatever clock the client uses.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

from hgr.common.config import Settings
from hgr.common.contracts import DetectionResult, HandResult
from hgr.common.inference.fingers import count_fingers, fingers_up
from hgr.common.inference.gestures import classify
from hgr.common.inference.images import EXPOSURE_BRACKETS, DecodedImage, ImageLimits, decode_image, with_gamma
from hgr.common.options import DetectOptions, check_model, default_options

# The ``retry`` field of a still whose hands were found only on an exposure bracket (EXPOSURE_RETRY).
RETRY_NAMES = {gamma: "darker" if gamma > 1 else "brighter" for gamma in EXPOSURE_BRACKETS}


def _r(v: float) -> float:
    # Six decimals is far below landmark noise and halves the payload versus full floats.
    return round(float(v), 6)


Points = Sequence[Sequence[float]] | np.ndarray  # 21 × (x, y, z)


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


def _xyz(landmarks: Any) -> list[list[float]]:
    """MediaPipe Tasks' landmark objects as rows of (x, y, z)."""
    return [[p.x, p.y, p.z] for p in landmarks]


def sort_hands(hands: list[HandResult]) -> list[HandResult]:
    # Left to right in the image, so clients can match hands across frames without guessing.
    hands.sort(key=lambda h: h["bbox"][0])
    return hands


def result_to_hands(result: Any, mirrored: bool) -> list[HandResult]:
    world = result.hand_world_landmarks
    return sort_hands([hand_to_dict(_xyz(lm), _xyz(world[i]) if world else None, result.handedness[i][0].category_name,
                                    result.handedness[i][0].score, mirrored)
                       for i, lm in enumerate(result.hand_landmarks)])


def make_result(hands: list[HandResult], image_size: tuple[int, int], decode_ms: float,
                infer_ms: float, total_ms: float) -> DetectionResult:
    return {
        "hands": hands,
        "total_fingers": sum(h["fingers"] for h in hands),
        "image_size": list(image_size),
        "timing": {"decode_ms": round(decode_ms, 3), "infer_ms": round(infer_ms, 3), "total_ms": round(total_ms, 3)},
    }


class Detector:
    """Landmarkers for one process. Not thread-safe: use one per worker process or thread."""

    def __init__(self, settings: Settings, model_paths: dict[str, str], *, max_streams: int = 256) -> None:
        self.settings = settings
        self.model_paths = model_paths  # variant -> .task path (only the variants available)
        self.defaults = default_options(settings)
        self.limits = ImageLimits(settings.max_image_size, settings.max_image_pixels, settings.max_image_side,
                                  settings.infer_max_side)
        self._image: dict[tuple[str, int], vision.HandLandmarker] = {}
        self._video: OrderedDict[Any, tuple[vision.HandLandmarker, int]] = OrderedDict()
        self._max_streams = max_streams

    def _create(self, opts: DetectOptions, video: bool) -> vision.HandLandmarker:
        check_model(opts.model, self.model_paths)
        path = self.model_paths[opts.model]
        s = self.settings
        return vision.HandLandmarker.create_from_options(vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=path),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_hands=opts.num_hands,
            min_hand_detection_confidence=s.min_hand_detection_confidence,
            min_hand_presence_confidence=s.min_hand_presence_confidence,
            min_tracking_confidence=s.min_tracking_confidence,
        ))

    def warm_up(self) -> None:
        """Load the default model now so the first request does not pay for it."""
        self.detect_pixels(np.zeros((64, 64, 3), np.uint8), self.defaults)

    def detect_pixels(self, rgb: np.ndarray, opts: DetectOptions, stream: Any = None) -> tuple[list[HandResult], float]:
        """Run the model on an upright RGB image. ``stream`` set → VIDEO mode with tracking."""
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        start = time.perf_counter()
        if stream is None:
            key = (opts.model, opts.num_hands)
            landmarker = self._image.get(key) or self._image.setdefault(key, self._create(opts, video=False))
            result = landmarker.detect(image)
        else:
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
        return result_to_hands(result, opts.mirrored), (time.perf_counter() - start) * 1000

    def detect_bytes(self, data: bytes, opts: DetectOptions | None = None, stream: Any = None) -> DetectionResult:
        start = time.perf_counter()
        image: DecodedImage = decode_image(data, self.limits)
        opts = opts or self.defaults
        hands, infer_ms = self.detect_pixels(image.rgb, opts, stream)
        retry = None
        # Stills only: a stream would pay the extra passes on every frame without a hand in view.
        if not hands and stream is None and self.settings.exposure_retry:
            for gamma in EXPOSURE_BRACKETS:
                hands, more_ms = self.detect_pixels(with_gamma(image.rgb, gamma), opts)
                infer_ms += more_ms
                if hands:
                    retry = RETRY_NAMES[gamma]
                    break
        result = make_result(hands, image.size, image.decode_ms, infer_ms, (time.perf_counter() - start) * 1000)
        if retry:
            result["retry"] = retry  # the hands come from an exposure bracket, not the photo as sent
        return result

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
