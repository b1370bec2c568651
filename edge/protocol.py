"""The edge's WebSocket wire format, v1: pure encode/decode and validation, no I/O.

Two encodings carry the same messages (see docs/protocol.md): msgpack in binary messages (subprotocol
``hgr.msgpack.v1``, the default) and JSON in text messages (``hgr.json.v1``, for debugging; the image
travels base64). A binary message that is a bare JPEG/PNG/WebP file is a frame too, numbered by the edge.
Every problem with a message is a ``ProtocolError`` (an ``HgrError``): the session answers it with an
``error`` message and keeps the connection open.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from hgr.common import jsonsafe
from hgr.common.contracts import (
    DetectionResult,
    ErrorMessage,
    FrameMessage,
    HelloMessage,
    Limits,
    OptionsDoc,
    ResultMessage,
)
from hgr.common.errors import HgrError

VERSION = 1
MSGPACK = "hgr.msgpack.v1"
JSON = "hgr.json.v1"
ENCODINGS = (MSGPACK, JSON)
KEY_SUBPROTOCOL_PREFIX = "hgr.key."  # a subprotocol entry carrying the API key (browsers cannot set headers)

# Close codes (RFC 6455 §7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the edge is shutting down
CLOSE_UNSUPPORTED = 1003  # a text message on a msgpack connection
CLOSE_POLICY = 1008  # authentication failed
CLOSE_TOO_BIG = 1009  # a message larger than MAX_FRAME_BYTES
CLOSE_OVERLOADED = 1013  # MAX_CONNECTIONS reached

# Magic numbers of the image formats accepted as a bare binary frame. None of them can start a
# msgpack map (0x80-0x8f, 0xde, 0xdf), so the two kinds of binary message never get confused.
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
_MAX_SEQ = 2**63 - 1


class ProtocolError(HgrError):
    """A message the edge cannot use; ``seq`` is set when the message got far enough to carry one."""

    code = "bad_frame"

    def __init__(self, message: str, *, code: str | None = None, seq: int | None = None) -> None:
        super().__init__(message, code=code)
        self.seq = seq


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int | None  # None: a bare image; the session numbers it
    ts: float | None  # the client's timestamp (an int or a float), echoed untouched; None when absent
    image: bytes
    opts: Any  # raw options (validated later by DetectOptions.parse), None when absent


@dataclass(frozen=True, slots=True)
class Negotiated:
    encoding: str  # MSGPACK | JSON
    subprotocol: str | None  # what to answer in Sec-WebSocket-Protocol (None: offer none)
    key: str | None  # an API key offered as ``hgr.key.<key>``


def negotiate(offered: list[str]) -> Negotiated:
    """Pick the encoding from the client's subprotocol list and pull out a key entry, if any."""
    key = next((p[len(KEY_SUBPROTOCOL_PREFIX):] for p in offered if p.startswith(KEY_SUBPROTOCOL_PREFIX)), None)
    chosen = next((p for p in offered if p in ENCODINGS), None)
    return Negotiated(chosen or MSGPACK, chosen, key or None)


def is_image(data: bytes) -> bool:
    return data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def decode_binary(data: bytes) -> Frame:
    """A binary message: a bare image, or a msgpack ``frame`` map."""
    if is_image(data):
        return Frame(None, None, data, None)
    if not data or data[0] not in range(0x80, 0x90) and data[0] not in (0xDE, 0xDF):
        raise ProtocolError("a binary message must be a msgpack map or a JPEG/PNG/WebP image",
                            code="bad_message")
    try:
        # Lengths inside the payload are bounded by the payload itself, so a hostile header cannot
        # make msgpack allocate more than the message size.
        msg = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # noqa: BLE001 - msgpack raises several unrelated types on garbage
        raise ProtocolError(f"the message is not valid msgpack ({exc.__class__.__name__})",
                            code="bad_message") from None
    return _frame_from_map(msg, binary_image=True)


def decode_text(text: str, limits: jsonsafe.JsonLimits = jsonsafe.DEFAULT_LIMITS) -> Frame:
    """A text message: a JSON ``frame`` object with the image base64-encoded. Any JSON oddity (nesting
    past ``limits``, NaN, an unpaired surrogate) is a ``bad_message``/``json_too_complex`` error, never an
    exception that would drop the connection."""
    try:
        msg = jsonsafe.loads(text, limits)
    except jsonsafe.JsonTooComplex as exc:
        raise ProtocolError(f"the message is refused: {exc.message}", code=exc.code) from None
    except jsonsafe.BadJson as exc:
        raise ProtocolError(f"the message is refused: {exc.message}", code="bad_message") from None
    return _frame_from_map(msg, binary_image=False)


def _frame_from_map(msg: Any, *, binary_image: bool) -> Frame:
    if not isinstance(msg, dict):
        raise ProtocolError("a message must be a map/object with a \"type\"", code="bad_message")
    seq = msg.get("seq")
    seq_ok = isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= _MAX_SEQ
    kind = msg.get("type")
    if kind != "frame":
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r}; expected \"frame\"",
                            seq=seq if seq_ok else None)
    if not seq_ok:
        raise ProtocolError("\"seq\" must be an integer from 0 to 2^63-1")
    ts = msg.get("ts")
    if ts is not None and (not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts)):
        # Finite: ts is echoed in the result, and NaN/Infinity are not JSON.
        raise ProtocolError("\"ts\" must be a finite number (client milliseconds)", seq=seq)
    if "image" not in msg:
        raise ProtocolError("\"image\" is missing", seq=seq)
    image = msg["image"]
    if binary_image:
        if not isinstance(image, bytes):
            raise ProtocolError("\"image\" must be binary (msgpack bin) JPEG/PNG/WebP bytes", seq=seq)
    else:
        if not isinstance(image, str):
            raise ProtocolError("\"image\" must be a base64 string in JSON mode", seq=seq)
        try:
            image = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("\"image\" is not valid base64", seq=seq) from None
    return Frame(seq, ts, image, msg.get("opts"))


def hello(*, edge_id: str, encoding: str, limits: Limits, models: list[str],
          defaults: OptionsDoc, version: str) -> HelloMessage:
    return {"type": "hello", "protocol": VERSION, "edge_id": edge_id, "version": version,
            "encoding": encoding, "limits": limits, "models": models, "opts": defaults}


def result(seq: int, ts: float | None, detection: DetectionResult, dropped: int) -> ResultMessage:
    """A result message from the pool's result (hands, total_fingers, image_size, timing)."""
    return {"type": "result", "seq": seq, "ts": ts, "hands": detection["hands"],
            "total_fingers": detection["total_fingers"], "image_size": detection.get("image_size"),
            "timing": detection["timing"], "dropped": dropped}


def error(code: str, message: str, seq: int | None = None) -> ErrorMessage:
    out: ErrorMessage = {"type": "error", "code": code, "message": message}
    if seq is not None:
        out["seq"] = seq
    return out


def encode(message: Mapping[str, Any], encoding: str) -> bytes | str:
    """msgpack bytes (send as binary) or JSON text (send as text) of a message (``contracts.ServerMessage``
    or ``FrameMessage``)."""
    if encoding == JSON:
        return json.dumps(message, separators=(",", ":"))
    packed: bytes = msgpack.packb(message, use_bin_type=True)
    return packed


def decode_server_message(data: bytes | str) -> dict[str, Any]:
    """For clients (tests, load generators): an edge message in either encoding (unchecked: a
    ``contracts.ServerMessage`` from a well-behaved edge)."""
    doc: dict[str, Any] = json.loads(data) if isinstance(data, str) else msgpack.unpackb(data, raw=False)
    return doc


def encode_frame(seq: int, image: bytes, *, ts: float | None = None, opts: OptionsDoc | None = None,
                 encoding: str = MSGPACK) -> bytes | str:
    """For clients: a ``frame`` message."""
    msg: FrameMessage = {"type": "frame", "seq": seq, "ts": ts,
                         "image": base64.b64encode(image).decode() if encoding == JSON else image}
    if opts is not None:
        msg["opts"] = opts
    return encode(msg, encoding)
