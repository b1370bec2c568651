"""common/messaging/topics.py: topic names, edge-id rules and payload encoding of the fleet's MQTT messages."""

from __future__ import annotations

import pytest

from hgr.common.messaging.topics import (
    PayloadError,
    decode,
    edge_topic,
    edges_filter,
    encode,
    parse_edge_topic,
    shared_filter,
    topic_matches,
)


def test_topics_round_trip_and_filters() -> None:
    topic = edge_topic("hgr/v1", "cam-1", "metrics")
    assert topic == "hgr/v1/edges/cam-1/metrics"
    assert parse_edge_topic("hgr/v1", topic) == ("cam-1", "metrics")
    assert parse_edge_topic("hgr/v1", "hgr/v1/edges/cam-1/metrics/extra") is None
    assert parse_edge_topic("hgr/v1", "hgr/v1/edges/cam-1/bogus") is None
    assert parse_edge_topic("other", topic) is None
    assert parse_edge_topic("hgr/v1", f"hgr/v1/edges/{'x' * 65}/metrics") is None  # ids are bounded
    assert parse_edge_topic("hgr/v1", "hgr/v1/edges/a b/metrics") is None
    assert shared_filter("g", edges_filter("hgr/v1", "metrics")) == "$share/g/hgr/v1/edges/+/metrics"
    with pytest.raises(ValueError):
        edge_topic("hgr/v1", "cam-1", "nope")


@pytest.mark.parametrize("flt,topic,ok", [
    ("a/+/c", "a/b/c", True), ("a/+/c", "a/b/d", False), ("a/#", "a/b/c", True), ("a/#", "a", True),
    ("#", "$SYS/x", False), ("+/x", "$SYS/x", False), ("$share/g/a/+", "a/b", True), ("a/b", "a/b/c", False),
])
def test_topic_matching(flt: str, topic: str, ok: bool) -> None:
    assert topic_matches(flt, topic) is ok


def test_payloads_json_and_msgpack() -> None:
    doc = {"seq": 3, "edge_id": "é", "nested": {"a": [1, 2]}}
    data, ct = encode(doc)
    assert ct == "application/json" and data.startswith(b"{") and decode(data, ct) == doc
    data, ct = encode(doc, "msgpack")
    assert ct == "application/vnd.msgpack" and decode(data, ct) == doc
    assert decode(data) == doc  # sniffed without a content type
    for bad in (b"", b"{not json", b"[1,2]", b"\xc1", b"{" + b" " * 300_000 + b"}"):
        with pytest.raises(PayloadError):
            decode(bad)


def test_payload_size_cap_is_the_callers() -> None:
    data, ct = encode({"note": "x" * 2000})
    assert decode(data, ct)["note"] == "x" * 2000  # under the default (MAX_PAYLOAD)
    with pytest.raises(PayloadError, match="exceeds 1024"):
        decode(data, ct, max_bytes=1024)
