"""The edge's WebSocket wire format, v1: pure encode/decode and validation, no I/O.

Two encodings carry the same messages (see docs/protocol.md): msgpack in binary messages (subprotocol
``hgr.msgpack.v1``, the default) and JSON in text messages (``hgr.json.v1``, for debugging; the image
travels base64). A binary message that is a bare JPEG/PNG/WebP file is a frame too, numbered by the edge.
Every problem with a message is a ``ProtocolError`` (an ``HgrError``): the session answers it with an
``error`` message and keeps the connection open.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import msgspec

from hgr.common import jsonsafe
from hgr.common.contracts import (
    DetectionResult,
    ErrorMessage,
    FrameMessage,
    HelloMessage,
    Limits,
    OptionsDoc,
    ResultMessage,
    WsSeq,
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


# The frame's one declaration (``contracts.FrameMessage``) decodes both encodings: msgspec reads ``bytes`` from
# a msgpack bin and from a JSON base64 string, and checks every field at C speed (the edge decodes every frame).
_FROM_MSGPACK = msgspec.msgpack.Decoder(FrameMessage)
_FROM_JSON = msgspec.json.Decoder(FrameMessage)
_ANY_MSGPACK = msgspec.msgpack.Decoder()
_ANY_JSON = msgspec.json.Decoder()


def decode_binary(data: bytes) -> Frame:
    """A binary message: a bare image, or a msgpack ``frame`` map."""
    if is_image(data):
        return Frame(None, None, data, None)
    if not data or data[0] not in range(0x80, 0x90) and data[0] not in (0xDE, 0xDF):
        raise ProtocolError("a binary message must be a msgpack map or a JPEG/PNG/WebP image",
                            code="bad_message")
    try:
        # Lengths inside the payload are bounded by the payload itself, so a hostile header cannot
        # make msgspec allocate more than the message size.
        return _frame(_FROM_MSGPACK.decode(data))
    except msgspec.ValidationError as exc:
        raise _refusal(exc, data, _ANY_MSGPACK) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(f"the message is not valid msgpack ({exc.__class__.__name__})",
                            code="bad_message") from None


def decode_text(text: str, limits: jsonsafe.JsonLimits = jsonsafe.DEFAULT_LIMITS) -> Frame:
    """A text message: a JSON ``frame`` object with the image base64-encoded. Any JSON oddity (nesting
    past ``limits``, NaN, an unpaired surrogate) is a ``bad_message``/``json_too_complex`` error, never an
    exception that would drop the connection."""
    data = text.encode("utf-8", "surrogatepass")
    try:
        # The shape first (jsonsafe, before any parsing); msgspec refuses NaN and unpaired surrogates itself.
        jsonsafe.check_shape(data, limits)
        return _frame(_FROM_JSON.decode(data))
    except jsonsafe.JsonTooComplex as exc:
        raise ProtocolError(f"the message is refused: {exc.message}", code=exc.code) from None
    except msgspec.ValidationError as exc:
        raise _refusal(exc, data, _ANY_JSON) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(f"the message is refused: not valid JSON ({exc})", code="bad_message") from None


def _frame(msg: FrameMessage) -> Frame:
    return Frame(msg["seq"], msg.get("ts"), msg["image"], msg.get("opts"))


def _refusal(exc: msgspec.ValidationError, data: bytes,
             decoder: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]) -> ProtocolError:
    """The answer to a message that is no ``FrameMessage`` (rare: read again, untyped, for its ``seq``):
    ``bad_message`` unless it is a whole object, else ``bad_frame`` naming msgspec's complaint, with the
    message's ``seq`` when that one is valid."""
    try:
        msg = decoder.decode(data)
    except (msgspec.MsgspecError, RecursionError, TypeError) as whole:  # the typed decode stopped before it
        # Past what the typed decode read: broken, or a number out of range (1e999) anywhere.
        return ProtocolError(f"the message is refused: {str(whole)[:200]}", code="bad_message")
    if not isinstance(msg, dict):
        return ProtocolError("a message must be a map/object with a \"type\"", code="bad_message")
    try:
        seq: int | None = msgspec.convert(msg.get("seq"), WsSeq)
    except msgspec.ValidationError:
        seq = None
    if msg.get("type") != "frame":
        return ProtocolError(f"unknown message type {str(msg.get('type'))[:40]!r}; expected \"frame\"", seq=seq)
    return ProtocolError(f"not a valid frame: {exc}", seq=seq)


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
    """For clients: a ``frame`` message (msgspec writes ``image`` as bin in msgpack, base64 in JSON)."""
    msg: FrameMessage = {"type": "frame", "seq": seq, "ts": ts, "image": image}
    if opts is not None:
        msg["opts"] = opts
    if encoding == JSON:
        return msgspec.json.encode(msg).decode()
    return msgspec.msgpack.encode(msg)
