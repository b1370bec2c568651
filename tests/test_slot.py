"""edge/slot.py: the pure flow-control pieces of a stream, the latest-frame-wins slot and the frame-rate gate."""

from __future__ import annotations

from hgr.edge.slot import FpsGate, LatestSlot


def test_latest_frame_wins_and_the_replaced_one_is_handed_back() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert not slot and slot.take() is None
    assert slot.put(1) is None
    assert slot.put(2) == 1 and slot.put(3) == 2
    assert slot and slot.take() == 3 and not slot


def test_fps_gate_allows_the_rate_and_a_small_burst() -> None:
    gate = FpsGate(10.0)  # burst 2.5
    allowed = sum(gate.allow(0.0) for _ in range(10))
    assert allowed == 2  # a flood at one instant gets only the burst
    # over 10 simulated seconds at 100 fps offered, about 10 fps pass
    passed = sum(gate.allow(i / 100) for i in range(1, 1001))
    assert 95 <= passed <= 105


def test_a_steady_stream_below_the_rate_is_never_dropped() -> None:
    gate = FpsGate(30.0)
    assert all(gate.allow(i / 25) for i in range(250))


def test_zero_fps_stops_everything() -> None:
    assert not any(FpsGate(0.0).allow(i) for i in range(5))
