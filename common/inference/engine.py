"""The detection engine: image bytes in, the common result schema out (``common.inference.results``).

One ``Detector`` per worker process answers stills (REST, ``hgr detect``) and stream frames with one set of
models, chosen by ``STREAM_PIPELINE``:

- ``litert`` (the default): the bundle's two models run with LiteRT (``common.inference.hands``), one
  ``HandPipeline`` per model variant, shared by the stills and the streams of the worker (``self.streams``,
  ``common.inference.stream_pipeline``: tracking and the motion gate). A still is one frame with nothing
  tracked: palm detector → landmarks per ROI → duplicates of one hand dropped, which is what MediaPipe
  Tasks' IMAGE mode does (held to it on every shipped photo: tests/test_engine_parity.py). MediaPipe is
  never imported on this path.
- ``mediapipe`` (the documented fallback): MediaPipe Tasks (``common.inference.tasks``), one IMAGE
  landmarker for stills and one VIDEO landmarker per stream; imported only then.

Either way a still on which no hand is found gets a darker and a brighter look (``EXPOSURE_RETRY``);
streams never do (they would pay for it on every frame without a hand in view).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from hgr.common.config import Settings
from hgr.common.contracts import DetectionResult, HandResult
from hgr.common.inference.images import (
    EXPOSURE_BRACKETS,
    DecodedImage,
    ImageLimits,
    decode_image,
    unpack_rgb,
    with_gamma,
)
from hgr.common.inference.results import RETRY_NAMES, hand_to_dict, make_result, sort_hands
from hgr.common.inference.stream_pipeline import StreamPipelines
from hgr.common.options import DetectOptions, default_options

if TYPE_CHECKING:
    from hgr.common.inference.tasks import TasksLandmarkers

__all__ = ["RETRY_NAMES", "Detector"]


class Detector:
    """The models of one process. Not thread-safe: use one per worker process or thread."""

    def __init__(self, settings: Settings, model_paths: dict[str, str], *, max_streams: int = 256) -> None:
        self.settings = settings
        self.model_paths = model_paths  # variant -> .task path (only the variants available)
        self.defaults = default_options(settings)
        self.limits = ImageLimits.from_settings(settings)
        # litert: the worker's stream side too (it takes ``streams`` from here), so stills and streams share
        # one HandPipeline per variant: one set of interpreters, one warm-up.
        self.streams: StreamPipelines | None = None
        self._tasks: TasksLandmarkers | None = None
        if settings.stream_pipeline == "litert":
            self.streams = StreamPipelines(settings, model_paths, self.limits)
        else:
            from hgr.common.inference.tasks import TasksLandmarkers  # MediaPipe: on the fallback only

            self._tasks = TasksLandmarkers(settings, model_paths, max_streams=max_streams)

    def warm_up(self) -> None:
        """Load the default model now (and run it once) so the first request does not pay for it."""
        self.detect_pixels(np.zeros((64, 64, 3), np.uint8), self.defaults)

    def detect_pixels(self, rgb: np.ndarray, opts: DetectOptions, stream: Any = None) -> tuple[list[HandResult], float]:
        """Run the models on an upright RGB image: a still, or a frame of ``stream`` (tracked)."""
        start = time.perf_counter()
        if self.streams is not None:
            hands = self._still(rgb, opts) if stream is None else self.streams.detect(rgb, opts, stream).hands
        else:
            assert self._tasks is not None
            hands = self._tasks.detect(rgb, opts, stream)
        return hands, (time.perf_counter() - start) * 1000

    def _still(self, rgb: np.ndarray, opts: DetectOptions) -> list[HandResult]:
        assert self.streams is not None
        pipe = self.streams.pipeline(opts.model)
        # Tasks' IMAGE mode keeps a hand whose presence passes min_hand_presence_confidence (the tracking
        # threshold is for VIDEO mode: the pipeline's own, which the streams use).
        found = pipe.detect(rgb, opts.num_hands, min_presence=self.settings.min_hand_presence_confidence)
        return sort_hands([hand_to_dict(h.landmarks, h.world_landmarks, h.handedness, h.handedness_score,
                                        opts.mirrored) for h in found])

    def detect_bytes(self, data: bytes | memoryview, opts: DetectOptions | None = None, stream: Any = None, *,
                     rgb_shape: tuple[int, int] | None = None) -> DetectionResult:
        """``data`` is a compressed image, or with ``rgb_shape`` (height, width) packed RGB pixels (a frame the
        edge's camera reader decoded: ``StreamPipelines.detect_bytes``); a view is a worker's task as it came."""
        opts = opts or self.defaults
        if stream is not None and self.streams is not None:
            # its own decode and timing (what ran)
            return self.streams.detect_bytes(data, opts, stream, rgb_shape=rgb_shape)
        start = time.perf_counter()
        image: DecodedImage = unpack_rgb(data, rgb_shape, self.limits) if rgb_shape is not None else \
            decode_image(data, self.limits)
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
        if self.streams is not None:
            self.streams.close_stream(stream)
        if self._tasks is not None:
            self._tasks.close_stream(stream)

    def close(self) -> None:
        if self.streams is not None:
            self.streams.close()
        if self._tasks is not None:
            self._tasks.close()
