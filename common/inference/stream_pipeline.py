"""Stream frames through the shared hand pipeline (``STREAM_PIPELINE=litert``).

One ``HandPipeline`` per model variant per worker process, created on first use and shared by every stream
on that worker; a stream owns only a ``StreamState`` (a few ROIs, two timestamps and a 64×48 thumbnail,
~6 KB), kept in a dict by stream id and dropped at once when the stream closes: nothing to close, nothing
that can stall the worker. What runs on a frame is decided by ``common.inference.stream_state`` (motion gate,
landmarks on the tracked ROIs, palm detector when needed); the frame's ``timing`` says what ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from hgr.common.config import Settings
from hgr.common.contracts import DetectionResult, HandResult
from hgr.common.inference.hands import association
from hgr.common.inference.hands.check import Checked, checked_pipeline
from hgr.common.inference.hands.pipeline import Hand, HandPipeline, Roi, dedupe
from hgr.common.inference.hands.roi import bounds
from hgr.common.inference.hands.runtime import Choice, choose_here
from hgr.common.inference.images import ImageLimits, decode_image, unpack_rgb
from hgr.common.inference.results import hand_to_dict, make_result, sort_hands
from hgr.common.inference.stream_state import (
    ScheduleConfig,
    StreamState,
    advance,
    moved_outside,
    needs_thumbnail,
    plan,
    should_detect,
    thumbnail,
)
from hgr.common.options import DetectOptions, check_model


def schedule_config(settings: Settings) -> ScheduleConfig:
    return ScheduleConfig(detect_interval_ms=settings.detect_interval_ms,
                          detect_interval_frames=settings.detect_interval_frames, motion_gate=settings.motion_gate,
                          motion_threshold=settings.motion_threshold,
                          motion_max_skip_ms=settings.motion_max_skip_ms)


@dataclass(frozen=True, slots=True)
class StreamFrame:
    hands: list[HandResult]  # left to right
    infer_ms: float
    detector: bool  # the palm detector ran
    gated: bool  # the motion gate reused the empty result: no model ran
    hands_tracked: int  # ROIs carried in from the previous frame (landmark runs without the detector)


class StreamPipelines:
    """The worker's stream side. Not thread-safe: one per worker process."""

    def __init__(self, settings: Settings, model_paths: dict[str, str], limits: ImageLimits) -> None:
        self.settings = settings
        self.model_paths = model_paths
        self.limits = limits
        self.config = schedule_config(settings)
        # INFERENCE_RUNTIME × INFERENCE_PRECISION on this CPU; each variant's pipeline is checked against fp32
        # when it is made (common.inference.hands.check) and may serve fp32 instead.
        self.choice: Choice = choose_here(settings.inference_runtime, settings.inference_precision)
        self.checked: dict[str, Checked] = {}
        self._pipelines: dict[str, HandPipeline] = {}
        self._states: dict[Any, StreamState[Roi]] = {}

    @property
    def streams(self) -> int:
        return len(self._states)

    def pipeline(self, variant: str) -> HandPipeline:
        pipe = self._pipelines.get(variant)
        if pipe is None:
            check_model(variant, self.model_paths)
            s = self.settings
            # The detector threshold is MediaPipe's min_hand_detection_confidence; a track is kept while the
            # presence score passes min_tracking_confidence, as in MediaPipe's VIDEO mode.
            def make(choice: Choice) -> HandPipeline:
                return HandPipeline(self.model_paths[variant], threads=1, min_detection=s.min_hand_detection_confidence,
                                    min_presence=max(s.min_hand_presence_confidence, s.min_tracking_confidence),
                                    choice=choice)

            # Checked as a still is answered: with Tasks' presence threshold.
            checked = self.checked[variant] = checked_pipeline(make, self.choice, s.min_hand_presence_confidence)
            pipe = self._pipelines[variant] = checked.pipeline
        return pipe

    def detect(self, rgb: np.ndarray, opts: DetectOptions, stream: Any, now_ms: float | None = None) -> StreamFrame:
        """One frame of ``stream``; ``now_ms`` defaults to the monotonic clock."""
        start = time.perf_counter()
        now = time.monotonic() * 1000 if now_ms is None else now_ms
        state = self._states.get(stream) or StreamState()
        thumb = thumbnail(rgb) if needs_thumbnail(len(state.tracked), opts.num_hands, self.config) else None
        step = plan(state, now, thumb, self.config)
        if step.gated:
            self._states[stream] = advance(state, now, thumb, gated=True, detected=False, next_rois=())
            return StreamFrame([], (time.perf_counter() - start) * 1000, False, True, 0)
        pipe = self.pipeline(opts.model)
        track = step.track[:opts.num_hands]  # the stream may have asked for fewer hands since
        hands = [h for h in (pipe.landmarks(rgb, roi) for roi in track) if h is not None]
        lost = len(track) - len(hands)
        # Motion outside the tracked hands decides the look for another one: only while some are tracked, none was
        # lost (the detector looks at once then) and there is room for more.
        moved = 0 < len(hands) == len(track) < opts.num_hands and self._moved(state, thumb, rgb, track, hands)
        detected = should_detect(state, now, len(hands), lost, opts.num_hands, self.config, moved=moved)
        if detected:
            # A palm ROI and the tracked ROI of the same hand can overlap less than dedupe's IoU (their scales
            # differ), so a palm whose centre lies inside a tracked hand's landmarks is that hand: skipping it
            # saves a landmark run on most detector frames. The rest all get their landmarks (not only the free
            # slots: the first "new" palm may still be a tracked hand); the landmarks decide (``_distinct``), as
            # in MediaPipe's graph, and the tracked hands come first.
            palms = [r for r in pipe.palms(rgb, opts.num_hands) if not any(_inside(r, h) for h in hands)]
            found = dedupe([h.next_roi for h in hands], palms)
            hands += [h for h in (pipe.landmarks(rgb, roi) for roi in found) if h is not None]
        hands = _distinct(hands, rgb)[:opts.num_hands]
        if thumb is None and needs_thumbnail(len(hands), opts.num_hands, self.config):
            thumb = thumbnail(rgb)  # tracks lost: the next frame compares with this one
        self._states[stream] = advance(state, now, thumb, gated=False, detected=detected, moved=moved,
                                       next_rois=tuple(h.next_roi for h in hands))
        results = sort_hands([hand_to_dict(h.landmarks, h.world_landmarks, h.handedness, h.handedness_score,
                                           opts.mirrored) for h in hands])
        return StreamFrame(results, (time.perf_counter() - start) * 1000, detected, False, len(track))

    def _moved(self, state: StreamState[Roi], thumb: np.ndarray | None, rgb: np.ndarray, track: tuple[Roi, ...],
               hands: list[Hand]) -> bool:
        """``moved_outside`` the tracked hands: where they were (the ROIs looked at) and where they are (their next
        ROIs). Their own motion is no reason to look for another hand."""
        height, width = rgb.shape[:2]
        boxes = [bounds(r, width, height) for r in (*track, *(h.next_roi for h in hands))]
        return moved_outside(state, thumb, boxes, self.config)

    def detect_bytes(self, data: bytes | memoryview, opts: DetectOptions, stream: Any, now_ms: float | None = None, *,
                     rgb_shape: tuple[int, int] | None = None) -> DetectionResult:
        """A stream's frame in, the common result out (``timing`` says what ran); ``now_ms`` as for ``detect`` (a
        study replays a clip at its own frame rate: research/stages.py). ``data`` is a compressed image, or with
        ``rgb_shape`` (height, width) packed RGB pixels (a frame the edge's camera reader decoded: no JPEG decode,
        ``decode_ms`` is the unpacking's microseconds); everything after that is the same."""
        start = time.perf_counter()
        image = unpack_rgb(data, rgb_shape, self.limits) if rgb_shape is not None else \
            decode_image(data, self.limits, reduce_min_side=self.settings.reduced_decode_min_side)
        frame = self.detect(image.rgb, opts, stream, now_ms)
        result = make_result(frame.hands, image.size, image.decode_ms, frame.infer_ms,
                             (time.perf_counter() - start) * 1000)
        timing = result["timing"]
        timing["detector"], timing["gated"], timing["hands_tracked"] = frame.detector, frame.gated, frame.hands_tracked
        return result

    def warm_up(self, variant: str) -> None:
        """Load ``variant``'s models now (and run them once) so the first frame does not pay for it."""
        self.pipeline(variant).detect(np.zeros((64, 64, 3), np.uint8), 1)

    def close_stream(self, stream: Any) -> None:
        self._states.pop(stream, None)

    def close(self) -> None:
        for pipe in self._pipelines.values():
            pipe.close()
        self._pipelines.clear()
        self._states.clear()


def _inside(roi: Roi, hand: Hand) -> bool:
    """Whether ``roi``'s centre lies in ``hand``'s landmark box (normalised coordinates)."""
    xs, ys = hand.landmarks[:, 0], hand.landmarks[:, 1]
    return bool(xs.min() <= roi.cx <= xs.max() and ys.min() <= roi.cy <= ys.max())


def _distinct(hands: list[Hand], rgb: np.ndarray) -> list[Hand]:
    """Two tracks that drifted onto one hand count once (the first, a tracked one, is kept)."""
    if len(hands) < 2:
        return hands
    dropped = association.duplicates([h.landmarks for h in hands], rgb.shape[1], rgb.shape[0])
    return [h for i, h in enumerate(hands) if i not in dropped]
