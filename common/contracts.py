"""The shapes that cross a boundary, in one place: what a reader checks before calling a seam.

- **Data** (``TypedDict``, so the messages stay plain dicts on the wire): the detection result the
  workers produce, the WebSocket messages of docs/protocol.md and the MQTT payloads of docs/mqtt.md.
  The code that builds them (``common.inference.engine``, ``edge.protocol``, ``edge.reporter``,
  ``hub.fleet_logic``) and the code that reads them (``edge.session``, ``edge.stream_events``,
  ``hub.detection``) are typed with these.
- **Services** (``typing.Protocol``): the inference pool as edge, hub and the lifespan use it, so none
  depends on the concrete ``common.inference.pool.InferencePool`` (the message bus's protocol,
  ``MessageBus``, lives with the bus in ``common.messaging.bus``).

The WebSocket and MQTT shapes carry their bounds (``Annotated[..., msgspec.Meta(...)]``), and untrusted
input (a client's frame, an edge's payload on the hub, a hub's command on the edge, detection options) is
decoded *with these very types* by msgspec (``edge.protocol``, ``common.messaging.topics``,
``hub.fleet_logic``, ``edge.reporter``, ``common.options``): msgspec checks keys, types and bounds at C speed,
in JSON and msgpack alike, and returns plain dicts. There is no hand-written validator beside them.
"""

# No ``from __future__ import annotations`` here: on Python 3.11 a TypedDict then sees ``NotRequired[...]``
# only as a string and reports every key as required at run time (msgspec decodes by them).
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal, NotRequired, Protocol, TypedDict

from msgspec import Meta

from hgr.common.options import DetectOptions

# Declared with DetectOptions (which this module imports, so it cannot live here), and re-exported.
from hgr.common.options import OptionsDoc as OptionsDoc  # noqa: PLC0414

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


# --- bounds: what a reader accepts, declared once with the field (``msgspec.Meta``, checked at decode time) ---

MAX_SEQ = 2**53  # MQTT sequence numbers and counters: JSON-safe integers
MAX_WS_SEQ = 2**63 - 1  # a WebSocket frame's seq (msgpack's int64)
MAX_THROTTLE_FPS = 10_000  # a throttle command's max_fps
MAX_THROTTLE_S = 86_400  # a throttle command's duration_s
MAX_COUNTERS = 256  # names in a {name: count} map of a metrics message

# ts echoes untouched, so it must be writable back as JSON: finite (NaN fails both bounds).
Finite = Annotated[float, Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
WsSeq = Annotated[int, Meta(ge=0, le=MAX_WS_SEQ)]
Seq = Annotated[int, Meta(ge=1, le=MAX_SEQ)]  # numbered from 1
Count = Annotated[int, Meta(ge=0, le=MAX_SEQ)]
Timestamp = Annotated[float, Meta(ge=0, le=1e11)]  # seconds since the epoch
Session = Annotated[str, Meta(max_length=64)]
Name = Annotated[str, Meta(max_length=128)]  # a stream id, key name, counter name
# What an edge counts (frames, drops, messages queued): a claim, which any JSON number ≥ 0 may state (the hub
# floors it); sequence numbers above are integers proper.
Amount = Annotated[int, Meta(ge=0, le=MAX_SEQ)] | Annotated[float, Meta(ge=0, le=MAX_SEQ)]
Counters = Annotated[dict[Name, Amount], Meta(max_length=MAX_COUNTERS)]
Rate = Annotated[float, Meta(ge=0, le=1e6)]  # frames per second
Millis = Annotated[float, Meta(ge=0, le=1e7)]

# --- the edge's WebSocket messages (docs/protocol.md; built and parsed in edge.protocol) ---

WsEncoding = Literal["hgr.msgpack.v1", "hgr.json.v1"]


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
    """Client → edge; decoded by ``edge.protocol`` with this type (``bad_frame`` when it does not fit).
    ``image`` is bin in msgpack and a base64 string in JSON (msgspec's ``bytes`` in either)."""

    type: Literal["frame"]
    seq: WsSeq
    ts: NotRequired[Finite | None]
    image: bytes
    # An ``OptionsDoc``, sticky; left unchecked here because a bad one is a ``bad_options`` error (and
    # ``camera`` a stream name), checked by the session: ``DetectOptions.parse``, ``EdgeSession._take_name``.
    opts: NotRequired[Any]


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

# --- MQTT payloads (docs/mqtt.md; built by edge.reporter, decoded with these types by hub.fleet and the
# reporter's control handler). A reader needs only the identity fields (``session``, a sequence number, what
# the message is); the rest is NotRequired, read as empty/0 when absent, and checked against its bounds
# when present. The edge sends every field (tests/test_contracts.py holds it to that). Unknown fields are
# ignored. ---


class Envelope(TypedDict):
    """What every edge → hub message carries."""

    v: NotRequired[Annotated[int, Meta(ge=1)]]
    edge_id: NotRequired[Annotated[str, Meta(max_length=64)]]  # the topic's is the one the hub uses
    session: Session


class Capabilities(TypedDict):
    protocols: NotRequired[list[str]]
    max_fps: NotRequired[float]
    max_connections: NotRequired[int]
    workers: NotRequired[int]
    results_topic: NotRequired[bool]
    payload: NotRequired[str]
    control: NotRequired[list[str]]


class StatusOnline(Envelope):
    status: Literal["online"]
    birth_seq: Seq
    conn: NotRequired[Count]
    metrics_seq: NotRequired[Count]
    ts: NotRequired[Timestamp]
    version: NotRequired[Annotated[str, Meta(max_length=64)]]
    model: NotRequired[Annotated[str, Meta(max_length=64)]]
    metrics_interval_s: NotRequired[Annotated[float, Meta(ge=0, le=86_400)]]
    capabilities: NotRequired[Capabilities]
    cameras: NotRequired[list[Name]]  # the names of the cameras it reads itself (CAMERAS), when it has any


class StatusOffline(Envelope):
    status: Literal["offline"]
    reason: NotRequired[Annotated[str, Meta(max_length=32)]]  # "will" | "shutdown"
    conn: NotRequired[Count]
    ts: NotRequired[Timestamp]  # absent in the Will (written before the edge goes away)


class FrameCounts(TypedDict):
    received: NotRequired[Amount]
    processed: NotRequired[Amount]
    dropped: NotRequired[Amount]


class OutboxCounts(TypedDict):
    queued: NotRequired[Amount]
    dropped: NotRequired[Amount]


class CameraReport(TypedDict):
    """One camera the edge reads itself, in its metrics message (docs/cameras.md)."""

    name: Name
    up: bool
    fps: Rate  # frames processed per second, over the last 5 s
    reconnects: Count
    last_frame_age_s: float | None  # None: no frame yet
    frames_read: Count
    frames_processed: Count
    frames_dropped: Count


class MetricsBody(TypedDict):
    """The part of a metrics message computed from two ``node.stats()`` snapshots (``metrics_doc``)."""

    frames: NotRequired[FrameCounts]
    fps: NotRequired[Rate]
    drops: NotRequired[Counters]
    latency_ms: NotRequired[Annotated[dict[Name, Millis], Meta(max_length=8)]]  # p50, p95, p99
    connections: NotRequired[Annotated[int, Meta(ge=0, le=10_000_000)] | Annotated[float, Meta(ge=0, le=10_000_000)]]
    workers: NotRequired[dict[str, Any]]  # the pool's stats
    errors: NotRequired[Counters]
    frames_by_key: NotRequired[Counters]  # since the previous message
    interval_s: NotRequired[Annotated[float, Meta(ge=0)]]
    cameras: NotRequired[Annotated[list[CameraReport], Meta(max_length=MAX_COUNTERS)]]  # only with CAMERAS


class MetricsPayload(Envelope, MetricsBody):
    seq: Seq
    ts: NotRequired[Timestamp]
    outbox: NotRequired[OutboxCounts]


class EventHand(TypedDict):
    handedness: Name
    fingers: Count
    gesture: Name


class EventFields(TypedDict):
    """A stream's stable hand state, as events carry it (``edge.stream_events.state_fields``)."""

    total_fingers: NotRequired[Annotated[int, Meta(ge=0, le=1000)]]
    hands: NotRequired[Annotated[list[EventHand], Meta(max_length=16)]]


class EventPayload(Envelope, EventFields):
    seq: NotRequired[Count]
    ts: NotRequired[Timestamp]
    stream: Name
    key: NotRequired[Name | None]
    phase: Literal["new", "update", "end"]
    duration_s: NotRequired[Annotated[float, Meta(ge=0)]]  # on "end"


class ResultsPayload(Envelope):
    stream: str
    key: str | None
    ts: float
    result: ResultMessage


EdgePayload = StatusOnline | StatusOffline | MetricsPayload | EventPayload | ResultsPayload


class ThrottleCommand(TypedDict):
    """Hub → edge on ``…/control``: exactly one of ``key`` or ``stream`` (checked by the edge:
    ``reporter.throttle_target``); ``max_fps`` None or absent lifts the cap."""

    cmd: Literal["throttle"]
    key: NotRequired[Name]
    stream: NotRequired[Annotated[str, Meta(max_length=64)]]
    max_fps: NotRequired[Annotated[float, Meta(ge=0, le=MAX_THROTTLE_FPS)] | None]
    duration_s: NotRequired[Annotated[float, Meta(ge=0, le=MAX_THROTTLE_S)]]
    reason: NotRequired[Annotated[str, Meta(max_length=64)]]


class RebirthCommand(TypedDict):
    cmd: Literal["rebirth"]
    reason: NotRequired[Annotated[str, Meta(max_length=64)]]


ControlCommand = ThrottleCommand | RebirthCommand

# --- services ---

# A stream's frame source for ``submit_latest``: (image bytes, options, arrival time.monotonic()) or None.
Pull = Callable[[], "tuple[bytes, DetectOptions, float] | None"]


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

    async def submit_latest(self, pull: Pull, *, stream: str) -> DetectionResult | None: ...

    def close_stream(self, stream: str) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

