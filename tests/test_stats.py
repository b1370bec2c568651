"""edge/stats.py: one set of counters feeds both the edge's stats (for the fleet reporter) and Prometheus."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from hgr.edge.stats import EdgeStats


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _result(*gestures: str, gated: bool = False) -> dict[str, Any]:
    return {"hands": [{"gesture": g} for g in gestures], "timing": {"queue_ms": 2.0, "gated": gated}}


def test_snapshot_and_prometheus_count_the_same_things() -> None:
    before = {"received": _sample("hgr_frames_received_total", {"encoding": "json"}),
              "dropped": _sample("hgr_frames_dropped_total", {"reason": "superseded"}),
              "errors": _sample("hand_gesture_errors_total", {"service": "edge", "code": "bad_frame"}),
              "processed": _sample("hgr_frames_processed_total")}
    stats = EdgeStats()
    for _ in range(3):
        stats.received("json")
    stats.drop("superseded")
    stats.error("bad_frame")
    stats.processed("alice", 0.010, _result("open_palm"))
    stats.processed(None, 0.030, _result(gated=True))
    snap = stats.snapshot()
    assert snap["frames_received"] == 3 and snap["frames_processed"] == 2 and snap["frames_gated"] == 1
    assert snap["frames_dropped"] == {"superseded": 1} and snap["errors"] == {"bad_frame": 1}
    assert snap["frames_by_key"] == {"alice": 1}  # anonymous frames count, but under no key
    assert snap["latency_ms"]["p50"] == 10.0 and snap["latency_ms"]["p99"] == 30.0
    assert _sample("hgr_frames_received_total", {"encoding": "json"}) - before["received"] == 3
    assert _sample("hgr_frames_dropped_total", {"reason": "superseded"}) - before["dropped"] == 1
    assert _sample("hand_gesture_errors_total", {"service": "edge", "code": "bad_frame"}) - before["errors"] == 1
    assert _sample("hgr_frames_processed_total") - before["processed"] == 2
