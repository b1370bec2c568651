"""hub/fleet_logic.py, the fleet's pure rules: message parsing, sequence tracking, quota arithmetic, views.
The stores that apply them: test_fleet_store.py."""

from __future__ import annotations

import json

import pytest

from hgr.common.contracts import MetricsPayload
from hgr.common.messaging.topics import PayloadError, conform, decode, encode
from hgr.hub.fleet_logic import (
    EdgeBatch,
    SeqState,
    apply_seqs,
    credible_key_frames,
    edge_view,
    fleet_totals,
    metrics_msg,
    over_quota,
    quota_window,
    read_status,
    stream_throttle_command,
    throttle_command,
)


def test_seqs_in_order_are_all_accepted_without_gaps() -> None:
    state = SeqState()
    out = apply_seqs(state, "s1", [1, 2, 3], now=100.0, grace_s=2.0)
    assert out.accepted == [1, 2, 3] and out.duplicates == 0 and out.lost == 0 and out.reset
    out = apply_seqs(state, "s1", [4, 5], now=101.0, grace_s=2.0)
    assert out.accepted == [4, 5] and state.lo == 5 and state.hole_at == 0.0


def test_out_of_order_across_hubs_is_not_a_gap() -> None:
    state = SeqState()
    apply_seqs(state, "s", [1], 0.0, 2.0)
    # hub A flushes 2,4,6 before hub B flushes 3,5
    assert apply_seqs(state, "s", [2, 4, 6], 1.0, 2.0).lost == 0
    assert state.lo == 2 and state.hole_at == 1.0
    out = apply_seqs(state, "s", [3, 5], 1.5, 2.0)
    assert out.lost == 0 and out.accepted == [3, 5] and state.lo == 6 and state.hole_at == 0.0


def test_a_hole_older_than_the_grace_is_declared_lost_and_only_up_to_the_next_received() -> None:
    state = SeqState()
    apply_seqs(state, "s", [1, 2], 0.0, 2.0)
    apply_seqs(state, "s", [5, 6], 1.0, 2.0)  # 3 and 4 missing; hole noticed at t=1
    assert apply_seqs(state, "s", [8], 2.0, 2.0).lost == 0  # too young
    out = apply_seqs(state, "s", [9], 3.5, 2.0)
    assert out.lost == 2 and state.lo == 6  # 3,4 lost; 7 is a new hole with its own timer
    assert state.hole_at == 3.5
    # 7 arrives late but within its own grace: accepted, not a duplicate
    out = apply_seqs(state, "s", [7], 4.0, 2.0)
    assert out.accepted == [7] and out.lost == 0 and state.lo == 9


def test_duplicates_are_counted_and_not_accepted() -> None:
    state = SeqState()
    apply_seqs(state, "s", [1, 2, 4], 0.0, 2.0)
    out = apply_seqs(state, "s", [2, 4, 3], 0.5, 2.0)
    assert out.accepted == [3] and out.duplicates == 2 and state.lo == 4


def test_a_new_session_restarts_tracking() -> None:
    state = SeqState()
    apply_seqs(state, "old", [1, 2, 3, 4, 5], 0.0, 2.0)
    out = apply_seqs(state, "new", [1], 1.0, 2.0)
    assert out.reset and out.accepted == [1] and out.duplicates == 0


def test_quota_arithmetic() -> None:
    assert quota_window(125.0, 60.0) == (2, 180.0)
    assert not over_quota(10_000, 0)  # 0 = off
    assert not over_quota(100, 100) and over_quota(101, 100)
    cmd = throttle_command("alice", 180.0, 125.0)
    assert cmd == {"cmd": "throttle", "key": "alice", "max_fps": 0, "duration_s": 55.0, "reason": "fleet_quota"}


def test_reading_rejects_bad_payloads_with_payload_error() -> None:
    for doc in ({}, {"session": "s", "seq": -1}, {"session": "s", "seq": "1"}, {"session": 5, "seq": 1},
                {"session": "s", "seq": 1, "fps": "fast"}, {"session": "s", "seq": 1, "drops": {"x": -1}},
                {"session": "s", "seq": 1, "frames_by_key": []}, {"session": "s", "seq": True},
                {"session": "s", "seq": 1, "fps": 1e7}, {"session": "s" * 65, "seq": 1}):
        for fmt in ("json", "msgpack"):
            with pytest.raises(PayloadError):
                decode(*encode(doc, fmt), tp=MetricsPayload)  # what the hub does on arrival
    assert decode(*encode({"session": "s", "seq": 1}), tp=MetricsPayload) == {"session": "s", "seq": 1}
    # Counts are claims in any JSON number ≥ 0, counted whole; sequence numbers are integers proper.
    claim = metrics_msg(conform({"session": "s", "seq": 1, "frames_by_key": {"k": 2.7, "j": 1e15}}, MetricsPayload))
    assert claim.frames_by_key == {"k": 2, "j": 10**15}
    with pytest.raises(PayloadError):
        conform({"session": "s", "seq": 1.0}, MetricsPayload)
    batch = EdgeBatch()  # the pool stats are kept as JSON text: bounded, strict
    batch.add_metrics(metrics_msg(conform({"session": "s", "seq": 1, "workers": {"x": "y" * 20_000}}, MetricsPayload)))
    assert not batch.prepare() and batch.snapshot is None  # counted as invalid, no snapshot stored
    for doc in ({"status": "maybe", "session": "s"}, {"status": "online", "session": "s"},
                {"status": "online", "session": "s", "birth_seq": 1, "capabilities": "x"},
                {"status": "online", "session": "s", "birth_seq": 1, "capabilities": {"max_fps": float("nan")}}):
        with pytest.raises(PayloadError):
            read_status(doc)
    assert read_status({"status": "offline", "session": "s"}).reason == "offline"


def test_fleet_totals() -> None:
    raw = {"status": "online", "snapshot": json.dumps({"fps": 5.0, "connections": 2,
                                                      "frames": {"processed": 10, "dropped": 1},
                                                      "latency_ms": {"p95": 9.0}})}
    views = [edge_view("a", raw, 0.0), edge_view("b", {**raw, "status": "offline"}, 0.0)]
    totals = fleet_totals(views)
    assert totals["edges"] == 2 and totals["online"] == 1 and totals["fps"] == 5.0
    assert totals["drops"] == 2 and totals["connections"] == 2 and totals["max_latency_p95_ms"] == 9.0


def test_stream_throttle_command_has_the_key_throttles_fields() -> None:
    assert stream_throttle_command("1a-3f9c2e", 0, 30) == {"cmd": "throttle", "stream": "1a-3f9c2e", "max_fps": 0,
                                                           "reason": "operator", "duration_s": 30}
    assert stream_throttle_command("1a-3f9c2e", None, 30) == {"cmd": "throttle", "stream": "1a-3f9c2e",
                                                              "max_fps": None, "reason": "operator"}
    for bad in (("", 1, None), ("s", -1, None), ("s", 1, 0), ("x" * 65, 1, None)):
        with pytest.raises(ValueError):
            stream_throttle_command(*bad)


def test_an_edges_frame_claims_are_cut_to_what_it_can_process() -> None:
    # 10 fps, 2 s of burst: a fresh edge is believed for 20 frames, then 10 a second.
    allowance, c = credible_key_frames(None, {"a": 5, "b": 5}, 100.0, 0, 10, 2, 8)
    assert (c.frames, c.clamped_frames, c.dropped_names) == ({"a": 5, "b": 5}, 0, 0)
    allowance, c = credible_key_frames(allowance, {"a": 10**15, "b": 10**15}, 100.0, 0, 10, 2, 8)
    assert c.frames == {"a": 5, "b": 5} and c.clamped_frames == 2 * 10**15 - 10  # the burst left, alike
    allowance, c = credible_key_frames(allowance, {"a": 10**15}, 101.5, 0, 10, 2, 8)
    assert c.frames == {"a": 15}  # 1.5 s at 10 fps
    allowance, c = credible_key_frames(allowance, {"a": 3}, 1000.0, 0, 10, 2, 8)
    assert c.frames == {"a": 3} and allowance.budget == 17  # refilled to the burst, not beyond
    allowance, c = credible_key_frames(allowance, {"a": 1}, 999.0, 0, 10, 2, 8)  # a clock going back adds nothing
    assert c.frames == {"a": 1} and allowance.budget == 16


def test_an_edge_names_a_bounded_number_of_keys_per_window() -> None:
    allowance, c = credible_key_frames(None, {f"k{i}": 1 for i in range(5)}, 0.0, 7, 1e6, 1, 3)
    assert sorted(c.frames) == ["k0", "k1", "k2"] and c.dropped_names == 2
    allowance, c = credible_key_frames(allowance, {"k1": 1, "new": 1}, 0.0, 7, 1e6, 1, 3)
    assert c.frames == {"k1": 1} and c.dropped_names == 1  # names already counted still count
    allowance, c = credible_key_frames(allowance, {"new": 1}, 0.0, 8, 1e6, 1, 3)
    assert c.frames == {"new": 1} and c.dropped_names == 0  # a new window starts the names over
