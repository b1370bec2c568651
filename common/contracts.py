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
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, NotRequired, Protocol, TypedDict, TypeVar

import msgspec

from hgr.common.errors import HgrError
from hgr.common.options import DetectOptions, NumHands, Variant

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
Finite = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
WsSeq = Annotated[int, msgspec.Meta(ge=0, le=MAX_WS_SEQ)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]  # numbered from 1
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Timestamp = Annotated[float, msgspec.Meta(ge=0, le=1e11)]  # seconds since the epoch
Session = Annotated[str, msgspec.Meta(max_length=64)]
Name = Annotated[str, msgspec.Meta(max_length=128)]  # a stream id, key name, counter name
# What an edge counts (frames, drops, messages queued): a claim, which any JSON number ≥ 0 may state (the hub
# floors it); sequence numbers above are integers proper.
Amount = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] | Annotated[float, msgspec.Meta(ge=0, le=MAX_SEQ)]
Counters = Annotated[dict[Name, Amount], msgspec.Meta(max_length=MAX_COUNTERS)]
Connections = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] | Annotated[float, msgspec.Meta(ge=0, le=10_000_000)]
Rate = Annotated[float, msgspec.Meta(ge=0, le=1e6)]  # frames per second
Millis = Annotated[float, msgspec.Meta(ge=0, le=1e7)]

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

    v: NotRequired[Annotated[int, msgspec.Meta(ge=1)]]
    edge_id: NotRequired[Annotated[str, msgspec.Meta(max_length=64)]]  # the topic's is the one the hub uses
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
    version: NotRequired[Annotated[str, msgspec.Meta(max_length=64)]]
    model: NotRequired[Annotated[str, msgspec.Meta(max_length=64)]]
    metrics_interval_s: NotRequired[Annotated[float, msgspec.Meta(ge=0, le=86_400)]]
    capabilities: NotRequired[Capabilities]
    cameras: NotRequired[list[Name]]  # the names of the cameras it reads itself (CAMERAS), when it has any


class StatusOffline(Envelope):
    status: Literal["offline"]
    reason: NotRequired[Annotated[str, msgspec.Meta(max_length=32)]]  # "will" | "shutdown"
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
    latency_ms: NotRequired[Annotated[dict[Name, Millis], msgspec.Meta(max_length=8)]]  # p50, p95, p99
    connections: NotRequired[Connections]
    workers: NotRequired[dict[str, Any]]  # the pool's stats
    errors: NotRequired[Counters]
    frames_by_key: NotRequired[Counters]  # since the previous message
    interval_s: NotRequired[Annotated[float, msgspec.Meta(ge=0)]]
    cameras: NotRequired[Annotated[list[CameraReport], msgspec.Meta(max_length=MAX_COUNTERS)]]  # only with CAMERAS


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

    total_fingers: NotRequired[Annotated[int, msgspec.Meta(ge=0, le=1000)]]
    hands: NotRequired[Annotated[list[EventHand], msgspec.Meta(max_length=16)]]


class EventPayload(Envelope, EventFields):
    seq: NotRequired[Count]
    ts: NotRequired[Timestamp]
    stream: Name
    key: NotRequired[Name | None]
    phase: Literal["new", "update", "end"]
    duration_s: NotRequired[Annotated[float, msgspec.Meta(ge=0)]]  # on "end"


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
    stream: NotRequired[Annotated[str, msgspec.Meta(max_length=64)]]
    max_fps: NotRequired[Annotated[float, msgspec.Meta(ge=0, le=MAX_THROTTLE_FPS)] | None]
    duration_s: NotRequired[Annotated[float, msgspec.Meta(ge=0, le=MAX_THROTTLE_S)]]
    reason: NotRequired[Annotated[str, msgspec.Meta(max_length=64)]]


class RebirthCommand(TypedDict):
    cmd: Literal["rebirth"]
    reason: NotRequired[Annotated[str, msgspec.Meta(max_length=64)]]


ControlCommand = ThrottleCommand | RebirthCommand

# --- services ---


class PulledFrame(Protocol):
    """What a stream's pull hands the pool when its turn comes (``submit_latest``): the image bytes, their
    options and the arrival ``time.monotonic()``. The caller's own type, with whatever else it needs to
    answer (a sequence number, a timestamp), comes back unchanged in ``Ran.frame``.

    ``rgb_shape`` None: ``image`` is a compressed image (every network source). ``(height, width)``: ``image``
    is packed RGB pixels, a frame the edge's own camera reader decoded (edge/camera.py), handed to the worker
    as they are (common/inference/messages.py): a view of the reader's array, which the pool encodes without
    copying it first."""

    @property
    def image(self) -> bytes | memoryview: ...
    @property
    def rgb_shape(self) -> tuple[int, int] | None: ...
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



# --- REST (docs/api.md): the hub's request bodies and answers ---
#
# Declared once, here: ``hub.bodies.convert`` validates every JSON body against its type with msgspec
# (after ``common.jsonsafe`` has parsed it within its limits), and ``hub.openapi`` generates the OpenAPI
# schema (/openapi.json, /docs) from the same types with ``msgspec.json.schema_components``; the bounds,
# descriptions and examples in the ``Meta`` annotations are both the check and the documentation.
# A TypedDict stays a plain dict after validation and ignores keys it does not name; a ``msgspec.Struct``
# with ``forbid_unknown_fields`` is used where an unknown key is refused (options, the throttle body).

REST_SCHEMA_REF = "#/components/schemas/{name}"  # where hub.openapi puts the components

ImageId = Annotated[
    Annotated[str, msgspec.Meta(max_length=256)] | int,
    msgspec.Meta(description="Any string (at most 256 characters) or integer of yours: echoed back in the answer.",
                 examples=["photo-1"])]


class RestOptions(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Detection options of a REST request; an absent one takes the hub's default (``GET /model/info``).
    A wrong one is 422 ``bad_options``, a variant the hub lacks 422 ``model_unavailable``."""

    # the bounds and variants are the options' own (common.options): declared once for REST and WebSocket
    num_hands: Annotated[NumHands, msgspec.Meta(description="The most hands to look for.",
                                                examples=[2])] | msgspec.UnsetType = msgspec.UNSET
    mirrored: Annotated[bool, msgspec.Meta(
        description="The image is a mirrored selfie (a front camera's preview): handedness is swapped back.",
        examples=[False])] | msgspec.UnsetType = msgspec.UNSET
    model: Annotated[Variant, msgspec.Meta(
        description="The model variant (`lite`: faster, less accurate; only where the hub has it).",
        examples=["full"])] | msgspec.UnsetType = msgspec.UNSET


Base64Image = Annotated[str, msgspec.Meta(
    description="The image's bytes (JPEG, PNG, WebP or BMP) in base64; a `data:image/...;base64,` prefix and "
                "MIME line breaks are accepted. At most `MAX_IMAGE_SIZE` bytes once decoded.",
    examples=["/9j/4AAQSkZJRgABAQAAAQABAAD..."])]


class DetectRequest(TypedDict):
    """``POST /detect-fingers`` with a JSON body (the other way: the image itself as the body)."""

    image_base64: Base64Image
    image_id: NotRequired[ImageId]
    options: NotRequired[RestOptions | None]  # null: the defaults


class BatchItem(TypedDict):
    """One image of a batch: a wrong entry is answered in its own slot, the others are not affected."""

    image_base64: Base64Image
    image_id: NotRequired[ImageId]  # default: the entry's index, as a string
    options: NotRequired[RestOptions | None]  # over the batch's options (null: the batch's)


class BatchRequest(TypedDict):
    """``POST /detect-fingers-batch``: at most ``MAX_BATCH_IMAGES`` images (413 ``too_many_images`` beyond)."""

    images: Annotated[list[BatchItem], msgspec.Meta(min_length=1, description="The images, answered in order.")]
    options: NotRequired[RestOptions | None]  # for every image without options of its own (null: the defaults)


class BatchEnvelope(TypedDict):
    """``BatchRequest`` as the route first reads it: its entries left as sent, each then checked against
    ``BatchItem`` on its own, so one wrong entry costs only its slot."""

    images: Annotated[list[Any], msgspec.Meta(min_length=1)]
    options: NotRequired[RestOptions | None]  # null: the defaults


class UploadForm(TypedDict):
    """``POST /detect-fingers-upload`` (multipart/form-data): one or more ``file`` parts; ``options`` is a
    form field holding ``RestOptions`` as a JSON text."""

    file: Annotated[list[Annotated[str, msgspec.Meta(extra_json_schema={"contentMediaType": "image/*"})]],
                    msgspec.Meta(min_length=1,
                                 description="The image files (at most `MAX_BATCH_IMAGES`), answered in order.")]
    options: NotRequired[Annotated[str, msgspec.Meta(
        description="`RestOptions` as a JSON object text, for every file.", examples=['{"num_hands": 1}'])]]


class ThrottleRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /fleet/edges/{edge_id}/streams/{stream}/throttle``. ``max_fps`` is required, so a forgotten
    field never lifts a cap by accident."""

    max_fps: Annotated[float, msgspec.Meta(
        ge=0, le=MAX_THROTTLE_FPS, description="Frames per second the stream may use; 0 stops it, null lifts the cap.",
        examples=[2])] | None
    duration_s: Annotated[float, msgspec.Meta(
        gt=0, le=MAX_THROTTLE_S, description="The edge lifts the cap by itself after this long (null: never).",
        examples=[30])] | None = None


class ThrottleAnswer(TypedDict):
    """202: the command is on its way to the edge (MQTT QoS 1); an edge without that stream ignores it."""

    edge_id: str
    command: ThrottleCommand


class ErrorDetail(TypedDict):
    code: Annotated[str, msgspec.Meta(description="Stable: switch on it (docs/api.md \"Errors\").",
                                      examples=["invalid_request"])]
    message: Annotated[str, msgspec.Meta(description="For people; may change.")]
    request_id: NotRequired[Annotated[str, msgspec.Meta(description="Also the `X-Request-ID` response header.")]]


class ErrorBody(TypedDict):
    """Every error answer (``common.errors`` catalogue; ``hub.middleware.error_response``)."""

    error: ErrorDetail


class RestResult(DetectionResult):
    """One image's answer: the detection result plus what the hub adds."""

    image_id: NotRequired[ImageId]  # when the request named the image (always in a batch or upload)
    filename: NotRequired[str | None]  # uploads: the part's file name
    cached: Annotated[bool, msgspec.Meta(description="Answered from the result cache.")]
    processing_ms: Annotated[float, msgspec.Meta(description="Arrival to answer, on the hub.")]


class ItemError(TypedDict):
    """A batch or upload entry that failed: its error, in its own slot."""

    image_id: ImageId
    filename: NotRequired[str | None]
    error: ErrorDetail


class BatchResult(TypedDict):
    # msgspec cannot declare a union of two object types; the schema says what an entry is.
    results: Annotated[list[Annotated[dict[str, Any], msgspec.Meta(extra_json_schema={"oneOf": [
        {"$ref": REST_SCHEMA_REF.format(name="RestResult")}, {"$ref": REST_SCHEMA_REF.format(name="ItemError")}]})]],
        msgspec.Meta(description="One entry per image, in order: a result, or an error for that image alone.")]
    count: int
    succeeded: int
    failed: int
    processing_ms: float


class Health(TypedDict):
    status: Literal["ok"]


class Ready(TypedDict):
    """``GET /ready`` (``common.readiness``): 200 when the node takes work, 503 with ``error`` when not."""

    status: Literal["ready", "not_ready"]
    workers: Annotated[int, msgspec.Meta(ge=0, description="Live inference processes.")]
    models: list[str]
    redis: Annotated[bool | None, msgspec.Meta(description="The hub's Redis links (REDIS_URL's, and "
                                                "RATE_LIMIT_REDIS_URL's when set): true while every one is up; "
                                                "null without Redis.")]
    error: NotRequired[ErrorDetail]  # on 503: code `not_ready` and why


class ModelDefaults(TypedDict):
    num_hands: int
    mirrored: bool


class ModelInfo(TypedDict):
    """``GET /model/info``: what a client needs to choose options."""

    default: Literal["full", "lite"]
    variants: Annotated[dict[str, str], msgspec.Meta(description="Variant → model id (a hash of the bundle).")]
    defaults: ModelDefaults
    ready: bool


class Status(TypedDict):
    """``GET /status``: anyone gets the first five fields; a key with ``fleet:read`` gets the rest too
    (docs/security.md)."""

    service: str
    version: str
    status: Literal["ok", "degraded"]
    degraded: Annotated[list[str], msgspec.Meta(description="What is down: `redis` (REDIS_URL's), "
                                                "`rate_limit_redis` (RATE_LIMIT_REDIS_URL's), `workers`.")]
    uptime_s: float
    model: NotRequired[ModelInfo]
    pool: NotRequired[dict[str, Any]]
    redis: NotRequired[dict[str, Any]]
    mqtt: NotRequired[dict[str, Any] | None]
    cache: NotRequired[dict[str, Any]]
    rate_limit: NotRequired[dict[str, Any]]
    auth: NotRequired[dict[str, Any]]
    fleet: NotRequired[dict[str, Any] | None]
    limits: NotRequired[dict[str, int]]
    internals: NotRequired[dict[str, str]]


class EdgeView(TypedDict):
    """One edge as the fleet routes show it (``hub.fleet_logic.edge_view``)."""

    edge_id: str
    status: Annotated[str, msgspec.Meta(description="`online`, `offline` or `unknown`.")]
    reason: str
    last_seen: float | None
    last_seen_age_s: float | None
    online_since: float | None
    version: str
    model: str
    session: str
    birth_seq: int
    capabilities: dict[str, Any]
    fps: float
    latency_ms: dict[str, float]
    drops: int
    drops_by_reason: dict[str, int]
    connections: int
    frames: dict[str, int]
    workers: dict[str, Any]
    errors: dict[str, int]
    outbox: dict[str, int]
    metrics_seq: int
    messages: dict[str, int]
    last_event: dict[str, Any] | None


class FleetView(TypedDict):
    """``GET /fleet``: every edge and the totals (``hub.fleet.FleetService.fleet_view``)."""

    edges: list[EdgeView]
    totals: dict[str, float]
    ts: float
