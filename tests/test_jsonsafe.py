"""common.jsonsafe: every decoded-JSON oddity becomes BadJson/JsonTooComplex, never an exception of another
kind, and the streamed shape check stops a hostile document after a few KB."""

from __future__ import annotations

import json

import pytest

from hgr.common.jsonsafe import BadJson, JsonLimits, JsonTooComplex, Shape, loads
from hgr.common.messaging import topics
from hgr.edge import protocol


@pytest.mark.parametrize("text", ["[1e999]", '{"a": NaN}', "[Infinity]", "[-Infinity]", '"\\ud800"',
                                  '{"\\udfff": 1}', '["a\\ud83d"]', "{", "", "[1,]", "1" * 5000])
def test_oddities_are_bad_json(text: str) -> None:
    with pytest.raises(BadJson) as caught:
        loads(text)
    assert caught.value.status == 400 and caught.value.code == "bad_json"


def test_deep_and_wide_documents_are_refused_before_parsing() -> None:
    with pytest.raises(JsonTooComplex) as deep:
        loads("[" * 100_000)  # json.loads alone: RecursionError
    assert deep.value.status == 413
    with pytest.raises(JsonTooComplex):
        loads("[" + "[]," * 20_000 + "[]]")
    assert loads("[" * 32 + "]" * 32, JsonLimits(max_depth=32))
    with pytest.raises(JsonTooComplex):
        loads("[" * 33 + "]" * 33, JsonLimits(max_depth=32))


def test_valid_documents_pass_unchanged() -> None:
    doc = {"images": [{"image_id": "a\U0001F600", "image_base64": "QUJD" * 1000, "n": 1.5}], "ok": [True, None]}
    assert loads(json.dumps(doc)) == doc
    assert loads(json.dumps(doc).encode()) == doc
    assert loads('"\\ud83d\\ude00 \\\\ud800"') == "\U0001F600 \\ud800"  # a pair, and an escaped backslash


def test_the_shape_is_the_same_whatever_the_chunking() -> None:
    text = json.dumps({"a": ['x\\"y', {"b": "[{,"}], "c": ["\\\\", [1, 2, [3]]]}).encode()
    whole = Shape(JsonLimits())
    whole.feed(text)
    for size in (1, 2, 3, 7):
        shape = Shape(JsonLimits())
        for i in range(0, len(text), size):
            shape.feed(text[i:i + size])
        assert (shape.depth, shape.values) == (whole.depth, whole.values) == (0, 11)  # 6 containers, 5 commas


def test_a_hostile_stream_is_refused_early() -> None:
    shape = Shape(JsonLimits(max_values=10_000))
    fed = 0
    with pytest.raises(JsonTooComplex):
        for _ in range(1000):  # 63 MB if it were all fed
            shape.feed(b"[]," * 21_000)
            fed += 1
    assert fed == 0  # the first 63 KB chunk crossed the limit


def test_a_string_longer_than_the_limit_is_refused_while_it_arrives() -> None:
    shape = Shape(JsonLimits(max_string=100))
    shape.feed(b'{"a": "' + b"x" * 60)
    shape.feed(b"y" * 40 + b'", "b": "\\\\"')  # exactly 100, then a short one holding an escape
    with pytest.raises(JsonTooComplex, match="longer than 100 bytes"):
        shape.feed(b', "c": "' + b"z" * 101)
    assert loads('["' + "x" * 100 + '"]', JsonLimits(max_string=100)) == ["x" * 100]


# --- each decoder of untrusted JSON goes through it (issue 12 item 6) ---

def test_websocket_json_messages() -> None:
    for text, code in (("[" * 1500, "json_too_complex"),
                       ('{"type":"frame","seq":1,"ts":NaN,"image":""}', "bad_message"),
                       ('{"type":"frame","seq":1,"image":"","opts":{"\\ud800":1}}', "bad_message")):
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.decode_text(text)
        assert caught.value.code == code


def test_a_non_finite_ts_is_refused_in_msgpack_too() -> None:
    import msgpack

    for ts in (float("nan"), float("inf")):
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.decode_binary(msgpack.packb({"type": "frame", "seq": 1, "ts": ts, "image": b"x"}))
        assert caught.value.code == "bad_frame" and caught.value.seq == 1


def test_mqtt_payloads() -> None:
    for payload in (b'{"a":' + b"[" * 1500, b'{"seq": NaN}', b'{"edge": "\\udc80"}'):
        with pytest.raises(topics.PayloadError):
            topics.decode(payload, topics.CONTENT_TYPES["json"])
    nested = b"\x81\xa1a" + b"\x91" * 5000 + b"\xc0"  # msgpack {"a": [[[…]]]}: msgpack's own stack limit
    with pytest.raises(topics.PayloadError):
        topics.decode(nested, topics.CONTENT_TYPES["msgpack"])
