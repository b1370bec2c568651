"""EdgeReporter: birth, numbered metrics, debounced events, control commands, offline on stop; on the
in-process bus and on a real broker that is unreachable (the frame path must not care)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest

from hgr.common.config import load_settings
from hgr.common.contracts import ResultMessage
from hgr.common.messaging.bus import LocalBus, MqttBus
from hgr.common.messaging.topics import decode
from hgr.edge.reporter import EdgeReporter, metrics_doc
from tests.fleet_helpers import StandInNode
from tests.support import eventually, free_port


def _result(total: int, gesture: str = "open") -> ResultMessage:
    # Only what the reporter reads: the hands' handedness, fingers, gesture and score, and total_fingers.
    return cast(ResultMessage, {
        "hands": [{"handedness": "Right", "fingers": total, "gesture": gesture, "score": 0.9}] if total else [],
        "total_fingers": total})



def test_metrics_doc_deltas() -> None:
    node = StandInNode()
    node.processed, node.by_key = 100, {"alice": 60, "bob": 40}
    first = node.stats()
    node.processed, node.by_key = 150, {"alice": 90, "bob": 40}
    doc = metrics_doc(node.stats(), first, 5.0)
    assert doc["fps"] == 10.0 and doc["frames_by_key"] == {"alice": 30}
    assert doc["frames"] == {"received": 152, "processed": 150, "dropped": 2}
    assert doc["latency_ms"] == {"p50": 4.0, "p95": 9.5, "p99": 12.0}
    node.by_key = {"alice": 5}  # the node restarted its counters
    assert metrics_doc(node.stats(), first, 1.0)["frames_by_key"] == {"alice": 5}


# --- the reporter on the in-process bus ---

async def test_reporter_birth_metrics_events_control_and_offline() -> None:
    settings = load_settings({"EDGE_ID": "cam-1", "METRICS_INTERVAL": "0.1", "EVENT_DEBOUNCE_MS": "0"},
                             env_file=None)
    bus = LocalBus(settings)
    node = StandInNode()
    got: dict[str, list[dict[str, Any]]] = {"status": [], "metrics": [], "events": []}
    for kind, into in got.items():
        def collect(t: str, p: bytes, props: dict[str, Any], into: list[dict[str, Any]] = into) -> None:
            into.append(decode(p, props["content_type"]))

        bus.subscribe(f"hgr/v1/edges/+/{kind}", collect)
    reporter = EdgeReporter(settings, bus, node)
    await reporter.start()

    birth = await eventually(lambda: got["status"] and got["status"][0], 5, "the birth")
    assert birth["status"] == "online" and birth["birth_seq"] == 1 and birth["edge_id"] == "cam-1"
    assert birth["version"] == settings.app_version and "throttle" in birth["capabilities"]["control"]

    node.processed, node.by_key = 10, {"alice": 10}
    await eventually(lambda: len(got["metrics"]) >= 3, 10, "three metrics messages")
    seqs = [m["seq"] for m in got["metrics"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert sum(m["frames_by_key"].get("alice", 0) for m in got["metrics"]) == 10
    assert all(m["session"] == birth["session"] for m in got["metrics"])

    for total in (2, 2, 3):
        reporter.on_frame("s1", "alice", _result(total))
    reporter.on_stream_closed("s1")
    await eventually(lambda: len(got["events"]) >= 3, 5, "three events")
    assert [(e["phase"], e["total_fingers"]) for e in got["events"]] == [("new", 2), ("update", 3), ("end", 3)]
    assert got["events"][0]["key"] == "alice" and got["events"][0]["hands"][0]["fingers"] == 2

    control = "hgr/v1/edges/cam-1/control"
    bus.publish(control, json.dumps({"cmd": "throttle", "key": "alice", "max_fps": 0, "duration_s": 0.2}).encode(),
                qos=1)
    bus.publish(control, b"not json", qos=1)  # ignored, logged
    bus.publish(control, json.dumps({"cmd": "throttle", "key": 5}).encode(), qos=1)  # ignored
    bus.publish(control, json.dumps({"cmd": "rebirth"}).encode(), qos=1)
    await eventually(lambda: node.throttles == [("alice", 0.0), ("alice", None)], 5, "throttle then its lift")
    await eventually(lambda: any(s.get("birth_seq") == 2 for s in got["status"]), 5, "a rebirth")
    assert reporter.control_received == {"throttle": 1, "rebirth": 1}

    await reporter.stop()
    await eventually(lambda: got["status"][-1]["status"] == "offline", 5, "offline")
    assert got["status"][-1]["reason"] == "shutdown"


@pytest.mark.service
async def test_reporter_never_blocks_the_frame_path_without_a_broker() -> None:
    # A broker address where nothing listens: the edge keeps working, events wait in the outbox.
    settings = load_settings({"EDGE_ID": "cam-2", "MQTT_URL": f"mqtt://127.0.0.1:{free_port()}",
                              "EVENT_DEBOUNCE_MS": "0", "MQTT_RESULTS": "true", "MQTT_OUTBOX_SIZE": "50"},
                             env_file=None)
    bus = MqttBus(settings, client_id="cam-2-test")
    reporter = EdgeReporter(settings, bus, StandInNode())
    await reporter.start()
    for i in range(2000):
        reporter.on_frame(f"s{i % 4}", None, _result(i % 6))
    assert not bus.connected
    assert len(bus.outbox) == 50  # bounded
    assert bus.outbox.dropped["results"] == 2000  # QoS 0 results are never queued
    assert bus.outbox.dropped["events"] > 0
    await asyncio.wait_for(reporter.stop(), 10)


async def test_reporter_errors_never_reach_the_stream() -> None:
    """The edge calls on_frame/on_stream_closed unguarded on the frame path; the reporter contains its own
    failures (here a result it cannot read) and keeps reporting the next good frames."""
    settings = load_settings({"EDGE_ID": "cam-3", "EVENT_DEBOUNCE_MS": "0"}, env_file=None)
    bus = LocalBus(settings)
    events: list[dict[str, Any]] = []
    bus.subscribe("hgr/v1/edges/+/events", lambda t, p, props: events.append(decode(p, props["content_type"])))
    reporter = EdgeReporter(settings, bus, StandInNode())
    await reporter.start()
    try:
        reporter.on_frame("s1", None, {"hands": "not a list", "total_fingers": None})  # type: ignore[typeddict-item]  # on purpose
        reporter.on_frame("s1", None, _result(4))
        reporter.on_stream_closed("s1")
        await eventually(lambda: [e["phase"] for e in events] == ["new", "end"], 5, "events after the bad frame")
        assert events[0]["total_fingers"] == 4
    finally:
        await reporter.stop()


async def test_reporter_routes_stream_throttles_and_counts_what_it_ignores() -> None:
    settings = load_settings({"EDGE_ID": "cam-st", "METRICS_INTERVAL": "60"}, env_file=None)
    bus, node = LocalBus(settings), StandInNode()
    node.streams = {"1-aaaaaa"}
    reporter = EdgeReporter(settings, bus, node)
    await reporter.start()
    control = "hgr/v1/edges/cam-st/control"
    for doc in ({"cmd": "throttle", "stream": "1-aaaaaa", "max_fps": 0, "duration_s": 0.2},
                {"cmd": "throttle", "stream": "9-ffffff", "max_fps": 0},  # not here: ignored
                {"cmd": "throttle", "stream": 7, "max_fps": 0},  # bad types: ignored
                {"cmd": "throttle", "stream": "1-aaaaaa", "max_fps": "0"},
                {"cmd": "throttle", "stream": "1-aaaaaa", "key": "kiosk", "max_fps": 0}):
        bus.publish(control, json.dumps(doc).encode(), qos=1)
    await eventually(lambda: node.stream_throttles == [("1-aaaaaa", 0.0), ("1-aaaaaa", None)], 5,
                     "throttle then its lift after duration_s")
    assert reporter.control_ignored == {"unknown_stream": 1, "invalid": 3}
    assert reporter.control_received == {"throttle": 1} and node.throttles == []
    # A stream that closes takes its pending lift with it: the timer table does not grow.
    command = {"cmd": "throttle", "stream": "1-aaaaaa", "max_fps": 1, "duration_s": 600}
    bus.publish(control, json.dumps(command).encode(), qos=1)
    await eventually(lambda: ("stream", "1-aaaaaa") in reporter._lifts, 5, "the lift timer")
    reporter.on_stream_closed("1-aaaaaa")
    assert not reporter._lifts
    await reporter.stop()
