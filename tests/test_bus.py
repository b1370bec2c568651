"""Topics, payload encoding, the outbox's drop policy and the in-process bus (no broker needed)."""

from __future__ import annotations

import pytest
from support import eventually

from hgr.common.bus import LocalBus, make_bus
from hgr.common.config import load_settings
from hgr.common.outbox import Message, Outbox
from hgr.common.topics import (
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


def _m(kind: str, n: int) -> Message:
    return Message(f"p/edges/e/{kind}", str(n).encode(), qos=1)


def test_outbox_drops_oldest_metrics_first_and_keeps_order() -> None:
    box = Outbox(3)
    assert box.push(_m("events", 1)) is None
    assert box.push(_m("metrics", 2)) is None
    assert box.push(_m("metrics", 3)) is None
    dropped = box.push(_m("events", 4))
    assert dropped is not None and dropped.payload == b"2"
    assert box.push(_m("events", 5)).payload == b"3"
    # no metrics left: the oldest message of any kind goes
    assert box.push(_m("events", 6)).payload == b"1"
    # a new metrics message into a box of events is the least valuable itself
    assert box.push(_m("metrics", 7)).payload == b"7"
    assert [m.payload for m in box.pop_all()] == [b"4", b"5", b"6"]
    assert box.dropped == {"metrics": 3, "events": 1} and len(box) == 0


def test_make_bus_without_broker_is_in_process() -> None:
    assert isinstance(make_bus(load_settings({}, env_file=None)), LocalBus)


async def test_local_bus_delivers_like_a_broker() -> None:
    bus = LocalBus(load_settings({}, env_file=None))
    got: list[tuple[str, str, bytes, dict]] = []
    bus.publish("t/a/status", b"before-start", qos=1, retain=True)  # outboxed until start
    await bus.start()
    bus.subscribe("t/+/status", lambda t, p, props: got.append(("plain", t, p, props)))

    async def async_handler(t: str, p: bytes, props: dict) -> None:
        got.append(("shared-async", t, p, props))

    bus.subscribe("t/+/metrics", lambda t, p, props: got.append(("shared-sync", t, p, props)), shared=True)
    bus.subscribe("t/+/metrics", async_handler, shared=True)
    for i in range(4):
        bus.publish("t/a/metrics", str(i).encode(), qos=1)
    await eventually(lambda: len(got) >= 5, 5, "the retained message and the 4 shared ones", interval=0.01)
    retained = [g for g in got if g[0] == "plain"]
    assert len(retained) == 1 and retained[0][2] == b"before-start" and retained[0][3]["retain"]
    shared = sorted(g[2] for g in got if g[0].startswith("shared"))
    assert shared == [b"0", b"1", b"2", b"3"]  # each message to exactly one member
    assert {g[0] for g in got} == {"plain", "shared-sync", "shared-async"}  # split across members
    await bus.stop()


async def test_local_bus_survives_a_failing_handler() -> None:
    bus = LocalBus(load_settings({}, env_file=None))
    await bus.start()
    got: list[bytes] = []

    def bad(t: str, p: bytes, props: dict) -> None:
        raise RuntimeError("boom")

    bus.subscribe("x/#", bad)
    bus.subscribe("x/#", lambda t, p, props: got.append(p))
    bus.publish("x/1", b"a")
    bus.publish("x/1", b"b")
    await eventually(lambda: len(got) == 2, 2, "both messages to the good handler", interval=0.01)
    assert got == [b"a", b"b"] and bus.handler_errors == 2
    await bus.stop()


def test_outbox_requeue_puts_unacknowledged_messages_first() -> None:
    box = Outbox(4)
    box.push(_m("events", 3))
    box.push(_m("metrics", 4))
    box.requeue([_m("events", 1), _m("metrics", 2)])
    assert [m.payload for m in box.pop_all()] == [b"1", b"2", b"3", b"4"]
    box.push(_m("events", 5))
    box.push(_m("metrics", 6))
    box.requeue([_m("events", 1), _m("events", 2), _m("metrics", 3)])  # 5 into 4: oldest metrics goes
    assert [m.payload for m in box.pop_all()] == [b"1", b"2", b"5", b"6"]
