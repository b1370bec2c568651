"""The WebSocket wire format (edge.protocol): pure encode/decode and validation."""

from __future__ import annotations

import base64
import json

import msgpack
import pytest

from hgr.common.contracts import DetectionResult
from hgr.edge import protocol
from hgr.edge.protocol import ProtocolError

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8


@pytest.mark.parametrize("image", [JPEG, PNG, WEBP])
def test_a_bare_image_is_a_frame_without_seq(image: bytes) -> None:
    frame = protocol.decode_binary(image)
    assert frame.seq is None and frame.image == image and frame.opts is None


def test_msgpack_frame_round_trips() -> None:
    data = protocol.encode_frame(7, JPEG, ts=123.5, opts={"num_hands": 1})
    frame = protocol.decode_binary(data)  # type: ignore[arg-type]
    assert (frame.seq, frame.ts, frame.image, frame.opts) == (7, 123.5, JPEG, {"num_hands": 1})


def test_json_frame_carries_the_image_in_base64() -> None:
    text = protocol.encode_frame(3, JPEG, ts=1, encoding=protocol.JSON)
    assert isinstance(text, str) and json.loads(text)["image"] == base64.b64encode(JPEG).decode()
    frame = protocol.decode_text(text)
    assert (frame.seq, frame.ts, frame.image) == (3, 1, JPEG)


@pytest.mark.parametrize("message, code, seq", [
    (b"garbage bytes", "bad_message", None),
    (b"", "bad_message", None),
    (b"\x85\xa4type", "bad_message", None),  # a truncated msgpack map
    (msgpack.packb([1, 2, 3]), "bad_message", None),  # not a map
    (msgpack.packb({"type": "frame", "image": JPEG}), "bad_frame", None),  # no seq
    (msgpack.packb({"type": "frame", "seq": "1", "image": JPEG}), "bad_frame", None),
    (msgpack.packb({"type": "frame", "seq": True, "image": JPEG}), "bad_frame", None),
    (msgpack.packb({"type": "frame", "seq": -1, "image": JPEG}), "bad_frame", None),
    (msgpack.packb({"type": "frame", "seq": 4}), "bad_frame", 4),  # no image
    (msgpack.packb({"type": "frame", "seq": 4, "image": "text"}), "bad_frame", 4),
    (msgpack.packb({"type": "frame", "seq": 4, "image": JPEG, "ts": "now"}), "bad_frame", 4),
    (msgpack.packb({"type": "other", "seq": 5, "image": JPEG}), "bad_frame", 5),
    (msgpack.packb({"seq": 5, "image": JPEG}), "bad_frame", 5),
])
def test_bad_binary_messages_are_protocol_errors(message: bytes, code: str, seq: int | None) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.decode_binary(message)
    assert info.value.code == code and info.value.seq == seq and info.value.message


@pytest.mark.parametrize("text, code", [
    ("not json", "bad_message"),
    ("[1,2]", "bad_message"),
    ('{"type":"frame","seq":1,"image":"***"}', "bad_frame"),
    ('{"type":"frame","seq":1,"image":1}', "bad_frame"),
    ('{"type":"frame","seq":1,"ts":1e999,"image":""}', "bad_message"),  # out of range, as NaN: not echoable
    ('{"type":"frame","seq":1,"image":"","opts":{"a":-1e999}}', "bad_message"),  # anywhere, not only in ts
])
def test_bad_text_messages_are_protocol_errors(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.decode_text(text)
    assert info.value.code == code


def test_negotiate_picks_the_encoding_and_extracts_a_key() -> None:
    assert protocol.negotiate([]) == protocol.Negotiated(protocol.MSGPACK, None, None)
    assert protocol.negotiate(["hgr.json.v1"]) == protocol.Negotiated(protocol.JSON, "hgr.json.v1", None)
    n = protocol.negotiate(["hgr.key.s3cret", "hgr.msgpack.v1"])
    assert n == protocol.Negotiated(protocol.MSGPACK, "hgr.msgpack.v1", "s3cret")
    # the key entry is never chosen as the answered subprotocol (it would echo the secret)
    assert protocol.negotiate(["hgr.key.s3cret"]).subprotocol is None


def test_server_messages_encode_in_both_encodings() -> None:
    detection: DetectionResult = {"hands": [], "total_fingers": 0, "image_size": [640, 480],
                 "timing": {"queue_ms": 0.1, "decode_ms": 0.3, "infer_ms": 6.0, "total_ms": 6.6}}
    msg = protocol.result(9, 1234, detection, dropped=2)
    for encoding in protocol.ENCODINGS:
        assert protocol.decode_server_message(protocol.encode(msg, encoding)) == msg
    assert msg["type"] == "result" and msg["seq"] == 9 and msg["ts"] == 1234 and msg["dropped"] == 2
    assert protocol.error("bad_frame", "x") == {"type": "error", "code": "bad_frame", "message": "x"}
    assert protocol.error("bad_frame", "x", 3)["seq"] == 3
