"""The shapes that cross a boundary, in one place: what a reader checks before calling a seam.

- **Data** (``TypedDict``, so the messages stay plain dicts on the wire): the detection result the
  workers produce, the WebSocket messages of docs/protocol.md and the MQTT payloads of docs/mqtt.md.
  The code that builds them (``common.inference.engine``, ``edge.protocol``, ``edge.reporter``,
  ``hub.fleet_logic``) and the code that reads them (``edge.session``, ``edge.stream_events``,
  ``hub.detection``) are typed with these.
- **Services** (``typing.Protocol``): the inference pool as edge, hub and the lifespan use it, so none
  depends on the concrete ``common.inference.pool.InferencePool`` (the message bus's protocol,
  ``MessageBus``, lives with the bus in ``common.messaging.bus``).

Untrusted input (a client's frame, an edge's payload on the hub) is *validated* into these shapes by
``edge.protocol`` and ``hub.fleet_logic``; the types describe the result, they check nothing at run time.
"""

# No ``from __future__ import annotations`` here: on Python 3.11 a TypedDict then sees ``NotRequired[...]``
# only as a string and reports every key as required at run time (tests/test_contracts.py reads them).
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, NotRequired, Protocol, TypedDict, TypeVar

from hgr.common.errors import HgrError
from hgr.common.options import DetectOptions

# --- the detection result (common.inference.engine → worker → pool → edge / hub) ---


class HandResult(TypedDict):
    handedness: str  # "Left" | "Right", from the person's point of view
    score: float
    landmarks: list[list[float]]  # 21 × [x, y, z], normalised to the image
    world_landmarks: list[list[float]] | None  # 21 × [x, y, z] in metres, when the model gives them
    bbox: list[float]  # [x0, y0, x1, y1], normalised
    fingers_up: dict[str, bool]  # thumb, index, middle, ring, pinky
    fingers: int
    gesture: str


class Timing(TypedDict):
    queue_ms: NotRequired[float]  # added by the pool (arrival → a worker starts)
    decode_ms: float
    infer_ms: float
    total_ms: float
    # Stream frames with STREAM_PIPELINE=litert (common.inference.stream_pipeline): what ran on this frame.
    detector: NotRequired[bool]  # the palm detector ran
    gated: NotRequired[bool]  # the motion gate reused the empty result, no model ran
    hands_tracked: NotRequired[int]  # hands carried in from the previous frame


class DetectionResult(TypedDict):
    hands: list[HandResult]  # left to right in the image
    total_fingers: int
    image_size: list[int]  # [width, height]
    timing: Timing
    retry: NotRequired[str]  # "darker" | "brighter": a still whose hands were found on an exposure bracket


# --- the edge's WebSocket messages (docs/protocol.md; built and parsed in edge.protocol) ---

WsEncoding = Literal["hgr.msgpack.v1", "hgr.json.v1"]


class OptionsDoc(TypedDict, total=False):
    """Detection options as a client sends them (validated by ``DetectOptions.parse``)."""

    num_hands: int
    mirrored: bool
    model: str
    camera: str  # names the stream, on its first frame only (edge.session; docs/protocol.md "Named streams")


class Limits(TypedDict):
    max_frame_bytes: int
    max_fps: float
    idle_timeout_s: float
    max_connections: int


class HelloMessage(TypedDict):
    type: Literal["hello"]
    protocol: int
    edge_id: str
    version: str
    encoding: str
    limits: Limits
    models: list[str]
    opts: OptionsDoc
    stream: NotRequired[str]  # set by the edge node once it has numbered the connection


class FrameMessage(TypedDict):
    """Client → edge. ``image`` is bytes in msgpack, a base64 string in JSON. ``opts`` are sticky."""

    type: Literal["frame"]
    seq: int
    ts: NotRequired[float | None]
    image: bytes | str
    opts: NotRequired[OptionsDoc]


class ResultMessage(TypedDict):
    type: Literal["result"]
    seq: int
    ts: float | None  # the frame's, echoed untouched
    hands: list[HandResult]
    total_fingers: int
    image_size: list[int] | None
    timing: Timing
    dropped: int
    camera: NotRequired[str]  # the stream's name: a configured camera's, or one a WebSocket client gave


class ErrorMessage(TypedDict):
    type: Literal["error"]
    code: str
    message: str
    seq: NotRequired[int]


ServerMessage = HelloMessage | ResultMessage | ErrorMessage

# --- MQTT payloads (docs/mqtt.md; built by edge.reporter, read by hub.fleet_logic) ---


class Envelope(TypedDict):
    """What every edge → hub message carries."""

    v: int
    edge_id: str
    session: str


class Capabilities(TypedDict):
    protocols: list[str]
    max_fps: float
    max_connections: int
    workers: int
    results_topic: bool
    payload: str
    control: list[str]


class StatusOnline(Envelope):
    status: Literal["online"]
    birth_seq: int
    conn: int
    metrics_seq: int
    ts: float
    version: str
    model: str
    metrics_interval_s: float
    capabilities: Capabilities
    cameras: NotRequired[list[str]]  # the names of the cameras it reads itself (CAMERAS), when it has any


class StatusOffline(Envelope):
    status: Literal["offline"]
    reason: str  # "will" | "shutdown"
    conn: int
    ts: NotRequired[float]  # absent in the Will (written before the edge goes away)


class FrameCounts(TypedDict):
    received: int
    processed: int
    dropped: int


class OutboxCounts(TypedDict):
    queued: int
    dropped: int


class CameraReport(TypedDict):
    """One camera the edge reads itself, in its metrics message (docs/cameras.md)."""

    name: str
    up: bool
    fps: float  # frames processed per second, over the last 5 s
    reconnects: int
    last_frame_age_s: float | None  # None: no frame yet
    frames_read: int
    frames_processed: int
    frames_dropped: int


class MetricsBody(TypedDict):
    """The part of a metrics message computed from two ``node.stats()`` snapshots (``metrics_doc``)."""

    frames: FrameCounts
    fps: float
    drops: dict[str, int]
    latency_ms: dict[str, float]  # p50, p95, p99
    connections: int
    workers: dict[str, Any]  # the pool's stats
    errors: dict[str, int]
    frames_by_key: dict[str, int]  # since the previous message
    interval_s: float
    cameras: NotRequired[list[CameraReport]]  # only on an edge with cameras (CAMERAS)


class MetricsPayload(Envelope, MetricsBody):
    seq: int
    ts: float
    outbox: OutboxCounts


class EventHand(TypedDict):
    handedness: str
    fingers: int
    gesture: str


class EventFields(TypedDict):
    """A stream's stable hand state, as events carry it (``edge.stream_events.state_fields``)."""

    total_fingers: int
    hands: list[EventHand]


class EventPayload(Envelope, EventFields):
    seq: int
    ts: float
    stream: str
    key: str | None
    phase: Literal["new", "update", "end"]
    duration_s: NotRequired[float]  # on "end"


class ResultsPayload(Envelope):
    stream: str
    key: str | None
    ts: float
    result: ResultMessage


EdgePayload = StatusOnline | StatusOffline | MetricsPayload | EventPayload | ResultsPayload


class ThrottleCommand(TypedDict):
    """Hub → edge on ``…/control``: exactly one of ``key`` or ``stream``; ``max_fps`` None lifts the cap."""

    cmd: Literal["throttle"]
    key: NotRequired[str]
    stream: NotRequired[str]
    max_fps: NotRequired[float | None]
    duration_s: NotRequired[float]
    reason: NotRequired[str]


class RebirthCommand(TypedDict):
    cmd: Literal["rebirth"]
    reason: NotRequired[str]


ControlCommand = ThrottleCommand | RebirthCommand

# --- services ---


class PulledFrame(Protocol):
    """What a stream's pull hands the pool when its turn comes (``submit_latest``): the image bytes, their
    options and the arrival ``time.monotonic()``. The caller's own type, with whatever else it needs to
    answer (a sequence number, a timestamp), comes back unchanged in ``Ran.frame``."""

    @property
    def image(self) -> bytes: ...
    @property
    def opts(self) -> DetectOptions: ...
    @property
    def received_at(self) -> float: ...


F = TypeVar("F", bound=PulledFrame)

# A stream's frame source for ``submit_latest``: its newest frame, or None if it has none any more.
Pull = Callable[[], F | None]


@dataclass(frozen=True, slots=True)
class Ran(Generic[F]):
    """A ``submit_latest`` turn that took a frame: that frame, and what became of it — its result, or the
    error it failed with (a bad image, a refused model, its worker died)."""
    frame: F
    outcome: DetectionResult | HgrError


class DetectionPool(Protocol):
    """The inference pool as edge and hub use it (``common.inference.pool.InferencePool``)."""

    @property
    def model_paths(self) -> dict[str, str]: ...
    @property
    def size(self) -> int: ...
    @property
    def ready(self) -> bool: ...

    def stats(self) -> dict[str, Any]: ...

    async def submit(self, data: bytes, opts: DetectOptions, *, stream: str | None = None,
                     received_at: float | None = None) -> DetectionResult: ...

    async def submit_latest(self, pull: Pull[F], *, stream: str) -> Ran[F] | None:
        """Take a turn for ``stream``; ``pull()`` is called only when the turn comes. None if it returned
        None; raises HgrError only if no frame was taken (the pool is not running, the pull raised)."""

    def close_stream(self, stream: str) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

