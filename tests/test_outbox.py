"""common/messaging/outbox.py: the bounded outbox that holds MQTT messages while the broker is away,
and its drop policy."""

from __future__ import annotations

from hgr.common.messaging.outbox import Message, Outbox


def _m(kind: str, n: int) -> Message:
    return Message(f"p/edges/e/{kind}", str(n).encode(), qos=1)


def test_outbox_drops_oldest_metrics_first_and_keeps_order() -> None:
    box = Outbox(3)
    assert box.push(_m("events", 1)) is None
    assert box.push(_m("metrics", 2)) is None
    assert box.push(_m("metrics", 3)) is None
    dropped = box.push(_m("events", 4))
    assert dropped is not None and dropped.payload == b"2"
    assert (dropped := box.push(_m("events", 5))) is not None and dropped.payload == b"3"
    # no metrics left: the oldest message of any kind goes
    assert (dropped := box.push(_m("events", 6))) is not None and dropped.payload == b"1"
    # a new metrics message into a box of events is the least valuable itself
    assert (dropped := box.push(_m("metrics", 7))) is not None and dropped.payload == b"7"
    assert [m.payload for m in box.pop_all()] == [b"4", b"5", b"6"]
    assert box.dropped == {"metrics": 3, "events": 1} and len(box) == 0


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
