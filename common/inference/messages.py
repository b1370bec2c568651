"""The messages between the pool and a worker process, declared once for both sides.

Each message is a msgpack array prefixed by its 4-byte big-endian length; the first element names the
kind (msgspec's tag on an ``array_like`` struct), the rest are the fields in the order declared here:

    parent → worker  Init        once, first
                     Batch       the frames to run, in order (one message per batch: the hot path)
                     CloseStream a stream ended: free its tracker
    worker → parent  Ready | Fatal   once, after loading the model (or failing to)
                     VariantReady    another model variant made and checked (on its first frame: just
                                     before that frame's answer)
                     Result | Error  one per frame, as each finishes

A task's ``image`` is compressed image bytes (JPEG, PNG, …) unless it carries ``rgb_shape``: then it is packed
RGB pixels, ``height × width × 3`` bytes, row after row. Only the edge's own camera readers send pixels (a frame
they decoded themselves: no JPEG made in the edge only to be unmade in the worker); WebSocket and REST images
are always compressed. The worker checks a pixel task's length and sides (``images.unpack_rgb``).

``started`` is ``time.monotonic()``, a system-wide clock on Linux, so the parent can compute a frame's queueing
time. msgspec validates each message against its declaration as it decodes, so a malformed one fails loudly at
the boundary.

Light on purpose (msgspec only): the parent imports it without the model's libraries.
"""

from __future__ import annotations

from typing import Any

import msgspec

HEADER_LEN = 4  # bytes of big-endian length before each message


class Init(msgspec.Struct, array_like=True, tag="init"):
    settings: dict[str, Any]  # dataclasses.asdict(Settings)
    model_paths: dict[str, str]


class Task(msgspec.Struct, array_like=True):
    """One frame of a batch. ``stream`` None is IMAGE mode. ``rgb_shape`` None: ``image`` is a compressed image;
    ``(height, width)``: ``image`` is that many packed RGB pixels (a camera frame the edge decoded)."""
    id: int
    # A view: the pool sends a compressed image's bytes or a camera array's pixels as they are, and the worker reads
    # the field without copying it out of the message (``bytes(image)`` where bytes are needed).
    image: memoryview
    num_hands: int
    mirrored: bool
    model: str
    stream: str | None
    # Appended with a default: code that makes a compressed task is unchanged, and a six-element task still decodes.
    rgb_shape: tuple[int, int] | None = None


class Batch(msgspec.Struct, array_like=True, tag="batch"):
    tasks: list[Task]


class CloseStream(msgspec.Struct, array_like=True, tag="close_stream"):
    stream: str


class Inference(msgspec.Struct, array_like=True):
    """What runs a model variant's hand models in a worker, once its pipeline is made and checked
    (``hands.check``): the runtime and precision that serve, what the settings asked for ("openvino/bf16"), and
    why the check refused that ("" when it did not)."""
    variant: str
    runtime: str
    precision: str
    asked: str
    fallback: str = ""


class Ready(msgspec.Struct, array_like=True, tag="ready"):
    pid: int
    # The default variant's, made at start-up; None on STREAM_PIPELINE=mediapipe (MediaPipe runs its own models).
    inference: Inference | None = None


class VariantReady(msgspec.Struct, array_like=True, tag="variant_ready"):
    inference: Inference  # another variant's, made on its first frame, after Ready


class Fatal(msgspec.Struct, array_like=True, tag="fatal"):
    message: str


class Result(msgspec.Struct, array_like=True, tag="result"):
    id: int
    started: float
    # A DetectionResult; kept a plain dict here so decoding does not re-validate every field of every frame.
    result: dict[str, Any]


class Error(msgspec.Struct, array_like=True, tag="error"):
    id: int
    started: float
    code: str  # a catalogue code (common/errors.py)
    message: str


ToWorker = Init | Batch | CloseStream
FromWorker = Ready | VariantReady | Fatal | Result | Error

_encoder = msgspec.msgpack.Encoder()


def frame(msg: ToWorker | FromWorker) -> bytearray:
    """The message, length-prefixed, ready to write: encoded once, after room left for its length (a camera's
    ~1 MB of pixels copied once, not again to join the length to it). A new buffer each time: the writer may
    hold on to it until the socket has taken it all."""
    buf = bytearray(HEADER_LEN)
    _encoder.encode_into(msg, buf, HEADER_LEN)
    buf[:HEADER_LEN] = (len(buf) - HEADER_LEN).to_bytes(HEADER_LEN, "big")
    return buf


def length(header: bytes) -> int:
    return int.from_bytes(header, "big")


to_worker = msgspec.msgpack.Decoder(ToWorker)
from_worker = msgspec.msgpack.Decoder(FromWorker)
