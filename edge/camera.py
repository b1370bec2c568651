"""Cameras the edge reads itself (``CAMERAS``): RTSP, HTTP MJPEG, V4L2 devices and looped files.

Each camera has two halves:

- a *reader* thread (``Reader``) that opens the source with PyAV (FFmpeg), reads it, decodes H.264/H.265
  (an MJPEG source's JPEG parts are kept as they are: no decoding on the edge), and keeps only the newest
  frame offered at ``CAMERA_FPS`` (``Pacer``); a frame replaced before anyone took it is dropped. Open and
  read timeouts are FFmpeg's own (``av.open(timeout=(open, read))``); a failure closes the source and
  reopens it after a capped exponential back-off with jitter (``backoff_delay``). The thread blocks only
  itself: a dead camera never holds the event loop, another camera or a WebSocket stream.
- an asyncio task (``Camera._process``) that takes the newest frame, converts it in a thread when it was
  decoded (scaled by ``reduced_size`` and turned into packed RGB pixels by FFmpeg's swscale, only now, when
  the stream is ready for its next frame: a frame nobody will run is never converted), and takes a turn in
  the pool exactly as a WebSocket stream does (``submit_latest`` with the camera's name as the stream, so
  affinity, batching, the stream scheduler and the motion gate apply); the result goes to the edge's
  counters and to ``report_frame`` (fleet events, MQTT results) with ``camera`` set to the name.

What crosses the process boundary: an MJPEG part as the camera sent it (the worker decodes it, as a WebSocket
frame), or the pixels of a frame the reader decoded (``rgb_shape`` set: the worker runs them as they are).
Pixels, not a JPEG made here only for the worker to decode it again: that round trip cost ~2 ms of CPU a frame
(docs/cameras.md); the pixels are at the size the JPEG had (``reduced_size``), so the answers are comparable.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hgr.common import metrics
from hgr.common.camera_spec import CameraSpec, parse_cameras
from hgr.common.config import Settings
from hgr.common.contracts import ResultMessage
from hgr.common.errors import HgrError
from hgr.common.options import DetectOptions
from hgr.edge import protocol
from hgr.edge.session import StreamHost

if TYPE_CHECKING:
    import av.container
    import av.video.frame
    import numpy as np

log = logging.getLogger("hgr.edge.camera")

JPEG_QUALITY = 90
FPS_WINDOW_S = 5.0  # processed frames per second are counted over this window
STOP_TIMEOUT = 2.0  # seconds a reader thread gets to notice it should stop (then it is left, a daemon)


# What a camera needs from the node that owns it is what a WebSocket session needs (``EdgeNode`` fits it).
CameraHost = StreamHost


def backoff_delay(attempt: int, lo: float, hi: float, rand: float) -> float:
    """Seconds to wait before reopening after ``attempt`` failed attempts in a row (0 = the first).

    Capped exponential (``lo``·2^attempt, at most ``hi``) with "equal jitter": uniformly in the upper half
    of that cap (``rand`` in [0, 1)), so cameras that failed together do not all come back at once.
    """
    cap = min(hi, lo * 2.0 ** min(attempt, 60))
    return cap / 2 + cap / 2 * rand


class Pacer:
    """Which frames of a source to offer at ``fps``: the first frame at or after each due time (with a
    quarter-interval of slack, so a 30 fps camera read at 10 fps keeps every third frame, not every fourth)."""

    __slots__ = ("_due", "interval")

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self._due: float | None = None

    def keep(self, now: float) -> bool:
        if self._due is not None and now + self.interval / 4 < self._due:
            return False
        due = (now if self._due is None else self._due) + self.interval
        self._due = due if due > now else now + self.interval  # after a gap: no burst to catch up
        return True

    def reset(self) -> None:
        self._due = None


def reduced_size(width: int, height: int, min_side: int, max_side: int) -> tuple[int, int]:
    """The size a decoded frame is encoded at: halved (up to 1/8) while its shorter side stays ≥ ``min_side``
    (what the worker would decode a JPEG of it at: ``REDUCED_DECODE_MIN_SIDE``), and within ``max_side``."""
    factor = 1
    while min_side > 0 and factor < 8 and min(width, height) // (factor * 2) >= min_side:
        factor *= 2
    w, h = width // factor, height // factor
    if max(w, h) > max_side:
        scale = max_side / max(w, h)
        w, h = max(1, int(w * scale)), max(1, int(h * scale))
    return w - w % 2, h - h % 2


def frame_rgb(frame: av.video.frame.VideoFrame, min_side: int, max_side: int) -> np.ndarray:
    """A decoded frame as RGB pixels (H×W×3), scaled by ``reduced_size`` (FFmpeg's swscale does the scaling
    and the colour conversion in one pass)."""
    w, h = reduced_size(frame.width, frame.height, min_side, max_side)
    rgb: np.ndarray = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
    return rgb


def frame_pixels(frame: av.video.frame.VideoFrame, min_side: int,
                 max_side: int) -> tuple[memoryview, tuple[int, int]]:
    """What a camera hands the worker for a frame it decoded: ``frame_rgb`` packed row after row, and its
    (height, width) (``contracts.PulledFrame.rgb_shape``). A view of the array, not a bytes copy of it: the pool
    encodes it straight into the worker's message."""
    rgb = frame_rgb(frame, min_side, max_side)
    if not rgb.flags.c_contiguous:  # PyAV's rows padded to its line alignment (e.g. 638 px wide): packed, one copy
        rgb = rgb.copy()
    return rgb.data.cast("B"), (rgb.shape[0], rgb.shape[1])


def encode_frame(frame: av.video.frame.VideoFrame, min_side: int, max_side: int) -> bytes:
    """A decoded frame as JPEG at the size ``frame_pixels`` gives it: what the edge once sent its workers, and
    what a WebSocket client sends (the bench's clients: loadtest/clip_video.py)."""
    import simplejpeg

    data: bytes = simplejpeg.encode_jpeg(frame_rgb(frame, min_side, max_side), quality=JPEG_QUALITY,
                                         colorspace="RGB")
    return data


def forget_series(name: str, *families: Any) -> None:
    for family in families:
        try:
            family.remove(name)
        except KeyError:  # never created
            pass


def media_time(item: Any) -> float | None:
    """A packet's or frame's timestamp in seconds, when it has one."""
    pts, time_base = item.pts, item.time_base
    return None if pts is None or time_base is None else float(pts * time_base)


@dataclass(slots=True)
class Grab:
    """A frame the reader kept: JPEG bytes as the source sent them, or a decoded frame to convert."""

    read_at: float  # time.monotonic()
    wall_ms: float  # time.time() in ms: the result's ts
    jpeg: bytes | None = None
    frame: av.video.frame.VideoFrame | None = None


@dataclass(slots=True)
class _Prepared:
    """A grab ready for the pool (``contracts.PulledFrame``), and the grab it came from (for the answer):
    an MJPEG part (``rgb_shape`` None) or a decoded frame's pixels."""

    grab: Grab
    image: bytes | memoryview  # a decoded frame's pixels: a view of its array (``frame_pixels``)
    opts: DetectOptions
    rgb_shape: tuple[int, int] | None = None

    @property
    def received_at(self) -> float:
        return self.grab.read_at


class Reader:
    """The thread that reads one camera. Counters are written by the thread, read by the event loop
    (single ints and floats: consistent enough for status and metrics)."""

    def __init__(self, spec: CameraSpec, settings: Settings, notify: Any, on_state: Any = None) -> None:
        self.spec = spec
        self.settings = settings
        self.notify = notify  # called (in the thread) when a new frame is kept
        self.on_state = on_state  # called (in the thread) with True/False when the camera comes up / goes down
        self.up = False
        self.reconnects = 0
        self.frames_read = 0
        self.frames_dropped = 0
        self.last_frame_at: float | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._latest: Grab | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pacer = Pacer(settings.camera_fps)
        self._rand = random.Random()
        name = spec.name
        self._m_up = metrics.CAMERA_UP.labels(name)
        self._m_read = metrics.CAMERA_FRAMES_READ.labels(name)
        self._m_dropped = metrics.CAMERA_FRAMES_DROPPED.labels(name)
        self._m_reconnects = metrics.CAMERA_RECONNECTS.labels(name)
        self._m_up.set(0)

    # --- the event loop's side ---

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"hgr-camera-{self.spec.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and wait for it (bounded); call off the event loop. The camera's series
        leave /metrics with it (a camera taken out of CAMERAS leaves none behind)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        forget_series(self.spec.name, metrics.CAMERA_UP, metrics.CAMERA_FRAMES_READ, metrics.CAMERA_FRAMES_DROPPED,
                      metrics.CAMERA_RECONNECTS)

    def take(self) -> Grab | None:
        with self._lock:
            grab, self._latest = self._latest, None
        return grab

    def take_part(self) -> Grab | None:
        """The newest grab if it is an MJPEG part (ready to run as it is); a decoded frame stays where it is."""
        with self._lock:
            grab = self._latest
            if grab is None or grab.jpeg is None:
                return None
            self._latest = None
        return grab

    # --- the thread ---

    def _keep(self, grab: Grab) -> None:
        with self._lock:
            replaced, self._latest = self._latest, grab
        if replaced is not None:
            self.drop()
        self.notify()

    def drop(self) -> None:
        self.frames_dropped += 1
        self._m_dropped.inc()

    def _set_up(self, up: bool) -> None:
        changed, self.up = up != self.up, up
        self._m_up.set(1 if up else 0)
        if changed and self.on_state is not None:
            self.on_state(up)

    def _run(self) -> None:
        import av

        s, spec = self.settings, self.spec
        failures = 0
        while not self._stop.is_set():
            if failures or self.error is not None:
                self.reconnects += 1
                self._m_reconnects.inc()
            container = None
            try:
                container = av.open(spec.url, format=spec.format, options=dict(spec.options),
                                    timeout=(s.camera_open_timeout, s.camera_read_timeout))
                if self._read(container):
                    failures = 0  # it delivered frames: the next failure starts the back-off afresh
                self.error = "end of stream"
            except Exception as exc:  # noqa: BLE001 - any failure of a source means: close, wait, reopen
                self.error = f"{type(exc).__name__}: {exc}"[:300]
            finally:
                if container is not None:
                    try:
                        container.close()
                    except Exception as exc:  # noqa: BLE001 - closing a broken source
                        log.debug("camera %s: close failed: %s", spec.name, exc)
                self._set_up(False)
            if self._stop.is_set():
                break
            delay = backoff_delay(failures, s.camera_reconnect_min, s.camera_reconnect_max, self._rand.random())
            failures += 1
            log.warning("camera %s down (%s); reopening in %.2f s", spec.name, self.error, delay)
            self._stop.wait(delay)

    def _read(self, container: av.container.InputContainer) -> bool:
        """Read until the source fails or ends (a file loops); True when at least one frame came."""
        stream = container.streams.video[0]
        passthrough = stream.codec_context.name == "mjpeg"  # JPEG parts go to the worker as they are
        if not passthrough:
            stream.codec_context.thread_count = 1  # one core per camera at most: cameras x cores oversubscribes
        got = False
        self._pacer.reset()
        base: float | None = None  # a file: wall time of its timestamp 0, so it plays at its own rate
        while not self._stop.is_set():
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return got
                if passthrough:
                    if packet.size == 0:
                        continue
                    items: list[Any] = [packet]
                else:
                    items = list(packet.decode())
                for item in items:
                    now = time.monotonic()
                    at = media_time(item)
                    if self.spec.loop and at is not None:
                        if base is None:
                            base = now - at
                        wait = base + at - now
                        if wait > 0 and self._stop.wait(wait):
                            return got
                        now = time.monotonic()
                    if not got:
                        got = True
                        self.error = None
                        self._set_up(True)
                        log.info("camera %s up", self.spec.name)
                    self.frames_read += 1
                    self._m_read.inc()
                    self.last_frame_at = now
                    if not self._pacer.keep(now):
                        self.drop()
                        continue
                    wall_ms = time.time() * 1000
                    self._keep(Grab(now, wall_ms, jpeg=bytes(item)) if passthrough else Grab(now, wall_ms, frame=item))
            if not self.spec.loop or not got:
                return got
            container.seek(0)  # a file: again from the start
            base = None
        return got


class Camera:
    """One configured camera: its reader thread and the task that runs its frames through the pool."""

    def __init__(self, node: CameraHost, spec: CameraSpec) -> None:
        self.node = node
        self.spec = spec
        self.name = self.stream_id = spec.name
        self.reader = Reader(spec, node.settings, self._notify, self._on_state)
        self.frames_processed = 0
        self.last: ResultMessage | None = None
        self._processed_at: deque[float] = deque(maxlen=4096)
        self._seq = 0
        self._dropped_reported = 0
        self._ready: _Prepared | None = None
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._m_processed = metrics.CAMERA_FRAMES_PROCESSED.labels(spec.name)
        metrics.CAMERA_LAST_FRAME_AGE.labels(spec.name).set_function(self._age_or_minus_one)

    def _call_on_loop(self, fn: Any, *args: Any) -> None:
        """From the reader thread: run ``fn(*args)`` on the event loop (nothing once the loop is gone)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop closed in between
                pass

    def _notify(self) -> None:  # a new frame: wake the task
        self._call_on_loop(self._wakeup.set)

    def _on_state(self, up: bool) -> None:  # up or down: tell the node (the `available` topic)
        self._call_on_loop(self.node.camera_available, self.name, up)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._process(), name=f"hgr-camera-{self.name}")
        self.reader.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.reader.stop)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.node.pool.close_stream(self.stream_id)
        forget_series(self.name, metrics.CAMERA_FRAMES_PROCESSED, metrics.CAMERA_LAST_FRAME_AGE)

    def _pull(self) -> _Prepared | None:
        """Called by the pool when the camera's turn comes."""
        ready, self._ready = self._ready, None
        if ready is None:
            return None
        # An MJPEG source: a newer part costs nothing to take instead. A decoded source's newer frame is left to
        # the reader, for ``_process`` to convert next (taking it here would lose it).
        if ready.rgb_shape is None:
            newer = self.reader.take_part()
            if newer is not None and newer.jpeg is not None:
                self.reader.drop()
                ready = _Prepared(newer, newer.jpeg, ready.opts)
        return ready

    async def _process(self) -> None:
        node, counts, s = self.node, self.node.counts, self.node.settings
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            grab = self.reader.take()
            if grab is None:
                continue
            try:
                image: bytes | memoryview
                if grab.jpeg is not None:
                    image, shape = grab.jpeg, None
                else:
                    assert grab.frame is not None
                    image, shape = await asyncio.to_thread(frame_pixels, grab.frame, s.reduced_decode_min_side,
                                                           s.infer_max_side)
                    grab.frame = None
                counts.received("camera")
                self._ready = _Prepared(grab, image, node.defaults, shape)
                ran = await node.pool.submit_latest(self._pull, stream=self.stream_id)
                result = None if ran is None else ran.outcome
                if isinstance(result, HgrError):  # the frame ran and failed: counted like any other failure
                    raise result
            except HgrError as exc:
                counts.error(exc.code)
                log.warning("camera %s: frame failed: %s", self.name, exc.message)
                continue
            except Exception:  # one bad frame (a conversion failure) must not end the camera
                log.exception("camera %s: frame failed", self.name)
                continue
            if ran is None or result is None:
                continue
            grab = ran.frame.grab
            dropped = self.reader.frames_dropped - self._dropped_reported
            self._dropped_reported = self.reader.frames_dropped
            message = protocol.result(self._seq, grab.wall_ms, result, dropped)
            message["camera"] = self.name
            self._seq += 1
            now = time.monotonic()
            self.frames_processed += 1
            self._m_processed.inc()
            self._processed_at.append(now)
            self.last = message
            counts.processed(None, now - grab.read_at, result)
            node.report_frame(self.stream_id, None, message)

    # --- state ---

    def _age(self) -> float | None:
        at = self.reader.last_frame_at
        return None if at is None else max(0.0, time.monotonic() - at)

    def _age_or_minus_one(self) -> float:
        age = self._age()
        return -1.0 if age is None else age

    def fps(self, now: float) -> float:
        since = now - FPS_WINDOW_S
        n = sum(1 for t in reversed(self._processed_at) if t >= since)  # newest first; stops being counted early
        return round(n / FPS_WINDOW_S, 2)

    def status(self) -> dict[str, Any]:
        r, last, now = self.reader, self.last, time.monotonic()
        age = self._age()
        hands = last["hands"] if last is not None else []
        return {"name": self.name, "kind": self.spec.kind, "source": self.spec.shown, "up": r.up,
                "fps": self.fps(now), "reconnects": r.reconnects,
                "last_frame_age_s": None if age is None else round(age, 3),
                "frames_read": r.frames_read, "frames_processed": self.frames_processed,
                "frames_dropped": r.frames_dropped, "error": r.error,
                "fingers": None if last is None else last["total_fingers"],
                "hands": None if last is None else len(hands),
                "gesture": None if last is None else (hands[0]["gesture"] if hands else "none")}


class Cameras:
    """The edge's configured cameras, started and stopped together."""

    def __init__(self, node: CameraHost) -> None:
        self.cameras = [Camera(node, spec) for spec in parse_cameras(node.settings.cameras)]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def __contains__(self, name: str) -> bool:
        return any(c.name == name for c in self.cameras)

    async def start(self) -> None:
        for camera in self.cameras:
            await camera.start()
        if self.cameras:
            log.info("cameras started", extra={"cameras": self.names})

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.cameras), return_exceptions=True)

    def status(self) -> list[dict[str, Any]]:
        return [c.status() for c in self.cameras]
