"""edge/stream_events.py: the debounced per-stream hand state and the bounded tracker that turn results into
fleet events."""

from __future__ import annotations

from typing import cast

from hgr.common.contracts import DetectionResult
from hgr.edge.stream_events import EventTracker, StreamDebouncer, hand_state


def _result(total: int, gesture: str = "open") -> DetectionResult:
    # Only what hand_state reads: the hands' handedness, fingers and gesture, and total_fingers.
    return cast(DetectionResult, {
        "hands": [{"handedness": "Right", "fingers": total, "gesture": gesture, "score": 0.9}] if total else [],
        "total_fingers": total})


def test_debouncer_needs_a_state_to_hold() -> None:
    d = StreamDebouncer(0.3)
    three, four = hand_state(_result(3)), hand_state(_result(4))
    assert d.observe(three, 0.0) is None
    assert d.observe(three, 0.2) is None
    assert d.observe(three, 0.3) == "new"
    assert d.observe(four, 0.4) is None  # a one-frame flicker…
    assert d.observe(three, 0.5) is None  # …is no change
    assert d.observe(four, 0.6) is None
    assert d.observe(four, 0.95) == "update"
    assert d.observe(four, 2.0) is None  # still the same: nothing new to say


def test_event_tracker_lifecycle_and_bound() -> None:
    tracker = EventTracker(0.0, max_streams=2)
    assert tracker.observe("a", _result(2), 0.0) == ("new", hand_state(_result(2)))
    assert (update := tracker.observe("a", _result(5), 1.0)) is not None and update[0] == "update"
    assert tracker.end("a", 3.0) == (hand_state(_result(5)), 3.0)
    assert tracker.end("a", 3.0) is None
    for s in "xyz":
        tracker.observe(s, _result(1), 0.0)
    assert list(tracker.streams) == ["y", "z"]  # bounded: the oldest is forgotten
