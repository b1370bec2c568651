"""What a stream's next frame must run: the per-stream scheduler of the shared hand pipeline. Pure: no I/O,
no model, no clock (the caller passes ``now_ms``), so it is tested frame by frame.

A stream's state is data: the ROIs it tracks, when the palm detector last ran, when it last looked fully,
how many looks for another hand it owes to motion outside its tracked hands, and a 64×48 grey thumbnail of
its previous frame. Per frame:

1. **Motion gate** (``plan``). A stream tracking no hand whose frame has not changed since its previous
   frame reuses the empty result: no model runs. "Changed" is the largest per-pixel difference of the grey
   thumbnails (``cv2.resize`` INTER_AREA averages ~10×10 pixels, which cancels sensor noise and JPEG
   re-encoding). Measured on the labelled photos (docs/benchmarks.md): between consecutive frames of the
   camera clips of ``loadtest/clips.py`` (noise σ 3-6, drift 1.5-3 px, JPEG q80) no thumbnail pixel moves
   by more than 7 grey levels (14 with a 3 % mains flicker); a hand appearing at 15 % of the frame height
   moves one by at least 34. So the default ``MOTION_THRESHOLD`` of 16 gates a still camera and never
   hides a hand that appears. The mean difference cannot tell the two apart (0.79 for noise, 0.71 for the
   smallest hand) and is not used; comparing with the last *full look* instead of the previous frame was
   measured too and fails on a drifting camera (1.5 px of drift moves thumbnail pixels by up to 74). A
   hand that creeps in slower than the threshold per frame, or that the detector missed on the frame it
   appeared, is found by the full look that happens at least every ``MOTION_MAX_SKIP_MS``.
2. **Tracking** (``plan``). Every tracked ROI gets the landmark model (no palm detector).
3. **Detection** (``should_detect``, after the landmarks ran), the rules:
   - a track was lost (the landmark model's presence fell below its threshold): at once, this frame;
   - no hand tracked (and the frame not gated): every frame, so a hand entering is found on the first
     frame that shows it;
   - some but fewer than ``num_hands`` tracked: every ``DETECT_INTERVAL_MS`` *and* at most every
     ``DETECT_INTERVAL_FRAMES`` frames, to find the next hand. At 30 fps the milliseconds decide (200 ms =
     6 frames); a saturated edge serves each stream fewer frames per second, and the frame count keeps the
     detector from running on every other frame there (measured: at ~10 frames/s per stream an ms-only
     interval ran it on 44 % of one-hand frames). With the motion gate on, that look is also skipped
     while nothing has moved *outside the tracked hands* (``moved_outside``: the same thumbnail test with
     the tracked hands' boxes left out) and still taken at least every ``MOTION_MAX_SKIP_MS``: another hand
     coming into view moves the thumbnail where no tracked hand is, as it does in an empty scene. Motion
     there is owed ``LOOKS_AFTER_MOTION`` looks, one per interval, because the palm detector can miss a
     hand on one noisy frame and find it on the next (measured on 6 second-hand scenes: found on the first
     look in 5, on the second in 1); a still scene then waits for ``MOTION_MAX_SKIP_MS`` again.
   - ``num_hands`` tracked: never, as MediaPipe's own VIDEO mode (there is no room for another hand, and
     a track that loses its hand is caught by its presence score).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import cv2
import numpy as np

R = TypeVar("R")  # a tracked region (common.inference.hands.Roi); opaque here

THUMB_SIZE = (64, 48)  # (width, height) of the motion thumbnail
Box = tuple[float, float, float, float]  # (x0, y0, x1, y1), normalised to the frame
LOOKS_AFTER_MOTION = 2  # detector looks owed to motion outside the tracked hands (module docstring)


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    detect_interval_ms: float = 200.0
    detect_interval_frames: int = 5
    motion_gate: bool = True
    motion_threshold: float = 16.0  # grey levels, largest per-pixel change of the thumbnail
    motion_max_skip_ms: float = 1000.0


@dataclass(frozen=True, slots=True)
class StreamState(Generic[R]):
    tracked: tuple[R, ...] = ()
    last_detect_ms: float | None = None  # None: the detector never ran for this stream
    frames_since_detect: int = 0  # frames looked at fully since the detector last ran
    last_look_ms: float | None = None  # last frame not gated
    looks_owed: int = 0  # detector looks owed to motion outside the tracked hands
    thumb: np.ndarray | None = field(default=None, compare=False)  # thumbnail of the previous frame


@dataclass(frozen=True, slots=True)
class Plan(Generic[R]):
    gated: bool  # reuse the empty result; nothing runs
    track: tuple[R, ...]  # ROIs to run the landmark model on


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The motion thumbnail of an RGB frame: 64×48 grey, int16 so differences do not wrap."""
    small = cv2.resize(rgb, THUMB_SIZE, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.int16)


def needs_thumbnail(tracked: int, num_hands: int, cfg: ScheduleConfig) -> bool:
    """Whether a frame that starts with ``tracked`` hands tracked looks at its thumbnail: with the gate on,
    while fewer than ``num_hands`` are (none: ``plan``'s gate; some: ``moved_outside``, the search for another
    hand). A frame whose tracks fill ``num_hands`` skips the ~0.25 ms resize. A frame ending with fewer keeps
    one for the next frame, which compares with it (``StreamPipelines.detect``)."""
    return cfg.motion_gate and tracked < num_hands


def changed(a: np.ndarray, b: np.ndarray, threshold: float, ignore: Sequence[Box] = ()) -> bool:
    """Whether two thumbnails differ beyond camera noise (any pixel by more than ``threshold``), leaving out the
    ``ignore`` boxes (grown by one thumbnail pixel, which INTER_AREA blends with its neighbours)."""
    if a.shape != b.shape:
        return True
    diff = np.abs(a - b)
    rows, cols = diff.shape
    for x0, y0, x1, y1 in ignore:
        top, bottom = _cell(y0 * rows, rows, -1), _cell(y1 * rows, rows, 1)
        diff[top:bottom, _cell(x0 * cols, cols, -1):_cell(x1 * cols, cols, 1)] = 0
    return int(diff.max()) > threshold


def _cell(edge: float, size: int, grow: int) -> int:
    """The thumbnail row/column index just outside ``edge`` (in thumbnail pixels), one more pixel out, clipped."""
    if not math.isfinite(edge):
        return 0 if edge < 0 else size
    cell = math.floor(edge) if grow < 0 else math.ceil(edge)
    return min(size, max(0, cell + grow))


def moved_outside(state: StreamState[R], thumb: np.ndarray | None, hands: Sequence[Box],
                  cfg: ScheduleConfig) -> bool:
    """Whether anything moved outside ``hands`` (the boxes of the frame's tracked hands, where they were and
    where they are) since the previous frame. Without two consecutive thumbnails it cannot tell: moved."""
    return thumb is None or state.thumb is None or changed(thumb, state.thumb, cfg.motion_threshold, hands)


def plan(state: StreamState[R], now_ms: float, thumb: np.ndarray | None, cfg: ScheduleConfig) -> Plan[R]:
    """``thumb`` may be None while ``state`` tracks hands (it is not looked at then; ``needs_thumbnail``)."""
    if state.tracked:
        return Plan(False, state.tracked)
    gated = (cfg.motion_gate and thumb is not None and state.thumb is not None and state.last_look_ms is not None
             and now_ms - state.last_look_ms < cfg.motion_max_skip_ms
             and not changed(thumb, state.thumb, cfg.motion_threshold))
    return Plan(gated, ())


def should_detect(state: StreamState[R], now_ms: float, kept: int, lost: int, num_hands: int,
                  cfg: ScheduleConfig, *, moved: bool) -> bool:
    """After the landmark model ran on the tracked ROIs (``kept`` still hold a hand, ``lost`` do not):
    whether the palm detector runs on this frame (the rules are in the module's docstring). ``moved``:
    ``moved_outside`` for this frame."""
    if kept >= num_hands:
        return False
    if lost or kept == 0 or state.last_detect_ms is None:
        return True
    since = now_ms - state.last_detect_ms
    due = since >= cfg.detect_interval_ms and state.frames_since_detect + 1 >= cfg.detect_interval_frames
    return due and (moved or state.looks_owed > 0 or not cfg.motion_gate or since >= cfg.motion_max_skip_ms)


def advance(state: StreamState[R], now_ms: float, thumb: np.ndarray | None, *, gated: bool, detected: bool,
            next_rois: tuple[R, ...], moved: bool = False) -> StreamState[R]:
    """The state after this frame: ``next_rois`` are the ROIs to track on the next frame, ``moved`` this frame's
    ``moved_outside``. ``thumb`` may be None when ``next_rois`` is not empty (the next frame then counts as
    moved, should it look)."""
    if gated:
        return replace(state, thumb=thumb)
    owed = LOOKS_AFTER_MOTION if moved else state.looks_owed
    return replace(state, tracked=next_rois, last_look_ms=now_ms, thumb=thumb,
                   looks_owed=max(0, owed - 1) if detected else owed,
                   last_detect_ms=now_ms if detected else state.last_detect_ms,
                   frames_since_detect=0 if detected else state.frames_since_detect + 1)
