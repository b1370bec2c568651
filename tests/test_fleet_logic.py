"""Fleet rules: message parsing, sequence tracking, quota arithmetic, and the two stores (memory and
real Redis) run through the same cases so the Lua scripts and the Python rules cannot drift apart."""

from __future__ import annotations

import json
import uuid

import pytest
import redis.asyncio as aioredis

from hgr.common.redis_url import parse_redis_url
from hgr.common.topics import PayloadError
from hgr.hub.fleet_logic import (
    EdgeBatch,
    MetricsMsg,
    SeqState,
    StatusMsg,
    apply_seqs,
    edge_view,
    fleet_totals,
    metrics_snapshot,
    over_quota,
    parse_metrics,
    parse_status,
    quota_window,
    throttle_command,
)
from hgr.hub.fleet_store import MemoryFleetStore, RedisFleetStore
from hgr.hub.redis_conn import make_client

# --- pure rules ---

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


def test_parsing_rejects_bad_payloads_with_payload_error() -> None:
    for doc in ({}, {"session": "s", "seq": -1}, {"session": "s", "seq": "1"}, {"session": 5, "seq": 1},
                {"session": "s", "seq": 1, "fps": "fast"}, {"session": "s", "seq": 1, "drops": {"x": -1}},
                {"session": "s", "seq": 1, "frames_by_key": []}, {"session": "s", "seq": True}):
        with pytest.raises(PayloadError):
            metrics_snapshot(parse_metrics(doc).doc)  # identity on arrival, the rest when kept
    batch = EdgeBatch()
    batch.add_metrics(parse_metrics({"session": "s", "seq": 1, "fps": "fast"}))
    assert not batch.prepare() and batch.snapshot is None  # counted as invalid, no snapshot stored
    for doc in ({"status": "maybe", "session": "s"}, {"status": "online", "session": "s"},
                {"status": "online", "session": "s", "birth_seq": 1, "capabilities": "x"}):
        with pytest.raises(PayloadError):
            parse_status(doc)


def _metrics(seq: int, session: str = "s1", **extra) -> MetricsMsg:
    doc = {"session": session, "seq": seq, "fps": 10.0 + seq, "latency_ms": {"p50": 5, "p95": 9, "p99": 12},
           "frames": {"received": 100, "processed": 90, "dropped": 10}, "connections": 2,
           "frames_by_key": {"alice": 3}, **extra}
    return parse_metrics(doc)


def _batch(*seqs: int, session: str = "s1") -> EdgeBatch:
    batch = EdgeBatch()
    for seq in seqs:
        batch.add_metrics(_metrics(seq, session))
    assert batch.prepare()
    return batch


def _birth(session: str = "s1", birth_seq: int = 1, metrics_seq: int = 0) -> StatusMsg:
    return parse_status({"status": "online", "session": session, "birth_seq": birth_seq,
                         "metrics_seq": metrics_seq, "version": "1.0.0", "model": "full",
                         "capabilities": {"max_fps": 30}})


# --- the two stores, same behaviour ---

@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def store(request, redis_url):
    if request.param == "memory":
        yield MemoryFleetStore()
        return
    if request.param == "redis-cluster":  # the hub's own client for a 3-master cluster
        client = make_client(parse_redis_url(request.getfixturevalue("redis_cluster").url), 2.0)
    else:
        client = aioredis.Redis.from_url(redis_url)
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    yield RedisFleetStore(client, prefix)
    keys = [k async for k in client.scan_iter(f"*{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_store_birth_metrics_and_view(store) -> None:
    assert await store.apply_status("e1", _birth(), 100.0)
    assert not await store.apply_status("e1", _birth(), 101.0)  # the retained birth again: ignored
    result = await store.apply_batch("e1", _batch(1, 2, 3), 102.0, 2.0)
    assert result.accepted == [1, 2, 3] and result.duplicates == 0 and result.lost == 0
    view = edge_view("e1", await store.edge("e1"), 103.0)
    assert view["status"] == "online" and view["version"] == "1.0.0"
    assert view["fps"] == 13.0 and view["metrics_seq"] == 3 and view["messages"]["metrics"] == 3
    assert view["last_seen"] == 102.0 and view["capabilities"] == {"max_fps": 30}
    assert list(await store.edges()) == ["e1"]
    assert await store.edge("nope") is None


async def test_store_detects_duplicates_and_gaps(store) -> None:
    await store.apply_status("e1", _birth(), 0.0)
    await store.apply_batch("e1", _batch(1, 2), 1.0, 2.0)
    assert (await store.apply_batch("e1", _batch(2), 1.1, 2.0)).duplicates == 1
    assert (await store.apply_batch("e1", _batch(5, 6), 1.2, 2.0)).lost == 0
    assert (await store.apply_batch("e1", _batch(7), 2.0, 2.0)).lost == 0
    result = await store.apply_batch("e1", _batch(8), 3.5, 2.0)
    assert result.lost == 2 and result.accepted == [8]
    view = edge_view("e1", await store.edge("e1"), 4.0)
    assert view["messages"] == {"metrics": 6, "events": 0, "duplicates": 1, "gaps": 2}


async def test_store_birth_of_a_new_session_resets_sequence(store) -> None:
    await store.apply_status("e1", _birth("a"), 0.0)
    await store.apply_batch("e1", _batch(1, 2, 3, session="a"), 1.0, 2.0)
    await store.apply_status("e1", _birth("b", 1, metrics_seq=0), 2.0)
    result = await store.apply_batch("e1", _batch(1, session="b"), 3.0, 2.0)
    assert result.accepted == [1] and result.duplicates == 0
    # a birth announcing seq 10 (reconnect of a running edge seen by a fresh store): no false gap
    await store.apply_status("e2", _birth("c", 4, metrics_seq=10), 4.0)
    result = await store.apply_batch("e2", _batch(11, session="c"), 5.0, 2.0)
    assert result.accepted == [11] and result.lost == 0


async def test_store_offline_only_from_the_current_session(store) -> None:
    await store.apply_status("e1", _birth("new"), 0.0)
    stale_will = StatusMsg(False, "old", "will")
    assert not await store.apply_status("e1", stale_will, 1.0)
    assert (await store.edge("e1"))["status"] == "online"
    assert await store.apply_status("e1", StatusMsg(False, "new", "will"), 2.0)
    raw = await store.edge("e1")
    assert raw["status"] == "offline" and raw["reason"] == "will"


async def test_store_a_late_will_of_an_older_connection_is_ignored(store) -> None:
    birth = lambda conn, seq: parse_status({"status": "online", "session": "s", "birth_seq": seq, "conn": conn})
    assert await store.apply_status("e1", birth(1, 1), 0.0)
    assert await store.apply_status("e1", birth(1, 2), 1.0)  # a rebirth on the same connection
    assert await store.apply_status("e1", birth(2, 3), 2.0)  # reconnected (broker restart)
    will_of_conn_1 = parse_status({"status": "offline", "session": "s", "reason": "will", "conn": 1})
    assert not await store.apply_status("e1", will_of_conn_1, 3.0)  # queued during the restart: stale
    assert not await store.apply_status("e1", birth(1, 2), 3.5)  # an old birth replayed
    assert (await store.edge("e1"))["status"] == "online"
    assert await store.apply_status("e1", parse_status({"status": "offline", "session": "s", "reason": "will",
                                                        "conn": 2}), 4.0)
    assert (await store.edge("e1"))["status"] == "offline"


async def test_store_sweep_marks_stale_then_metrics_revive_then_forgets(store) -> None:
    await store.apply_status("e1", _birth(), 0.0)
    assert await store.sweep(10.0, 45.0, 0.0) == ([], [])
    assert await store.sweep(50.0, 45.0, 0.0) == (["e1"], [])
    assert (await store.edge("e1"))["reason"] == "stale"
    await store.apply_batch("e1", _batch(1), 51.0, 2.0)
    raw = await store.edge("e1")
    assert raw["status"] == "online" and raw["reason"] == "seen"
    await store.apply_status("e1", StatusMsg(False, "s1", "shutdown"), 52.0)
    assert await store.sweep(60.0, 45.0, 100.0) == ([], [])
    assert await store.sweep(200.0, 45.0, 100.0) == ([], ["e1"])
    assert await store.edge("e1") is None and await store.edges() == {}


async def test_store_quota_counts_and_claims(store) -> None:
    assert await store.add_key_frames(7, {"alice": 5, "bob": 1}, 120.0) == {"alice": 5, "bob": 1}
    assert await store.add_key_frames(7, {"alice": 4}, 120.0) == {"alice": 9}
    assert await store.add_key_frames(8, {"alice": 1}, 120.0) == {"alice": 1}
    assert await store.claim("throttle:7:alice", 60.0)
    assert not await store.claim("throttle:7:alice", 60.0)


async def test_store_events_update_counters_and_last_event(store) -> None:
    batch = EdgeBatch()
    batch.add_event({"phase": "new", "stream": "a", "total_fingers": 3, "ts": 1.0})
    batch.add_event({"phase": "update", "stream": "a", "total_fingers": 4, "ts": 2.0})
    await store.apply_batch("e1", batch, 5.0, 2.0)
    view = edge_view("e1", await store.edge("e1"), 6.0)
    assert view["messages"]["events"] == 2 and view["last_event"]["total_fingers"] == 4
    assert view["last_seen"] == 5.0


def test_fleet_totals() -> None:
    raw = {"status": "online", "snapshot": json.dumps({"fps": 5.0, "connections": 2,
                                                      "frames": {"processed": 10, "dropped": 1},
                                                      "latency_ms": {"p95": 9.0}})}
    views = [edge_view("a", raw, 0.0), edge_view("b", {**raw, "status": "offline"}, 0.0)]
    totals = fleet_totals(views)
    assert totals["edges"] == 2 and totals["online"] == 1 and totals["fps"] == 5.0
    assert totals["drops"] == 2 and totals["connections"] == 2 and totals["max_latency_p95_ms"] == 9.0
