"""hub/fleet_store.py: the fleet's two stores (in memory, and Redis through the Lua scripts, single node and
cluster) run through the same cases, so the scripts and the Python rules cannot drift apart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from hgr.common.contracts import MetricsPayload
from hgr.common.messaging.topics import conform
from hgr.common.redis_url import parse_redis_url
from hgr.hub.fleet_logic import (
    EdgeBatch,
    MetricsMsg,
    StatusMsg,
    edge_view,
    metrics_msg,
    read_status,
)
from hgr.hub.fleet_store import FleetStore, MemoryFleetStore, RedisFleetStore
from hgr.hub.redis_conn import make_client


def _metrics(seq: int, session: str = "s1", **extra: Any) -> MetricsMsg:
    doc = {"session": session, "seq": seq, "fps": 10.0 + seq, "latency_ms": {"p50": 5, "p95": 9, "p99": 12},
           "frames": {"received": 100, "processed": 90, "dropped": 10}, "connections": 2,
           "frames_by_key": {"alice": 3}, **extra}
    return metrics_msg(conform(doc, MetricsPayload))


def _batch(*seqs: int, session: str = "s1") -> EdgeBatch:
    batch = EdgeBatch()
    for seq in seqs:
        batch.add_metrics(_metrics(seq, session))
    assert batch.prepare()
    return batch


def _birth(session: str = "s1", birth_seq: int = 1, metrics_seq: int = 0) -> StatusMsg:
    return read_status({"status": "online", "session": session, "birth_seq": birth_seq,
                         "metrics_seq": metrics_seq, "version": "1.0.0", "model": "full",
                         "capabilities": {"max_fps": 30}})


async def _edge(store: FleetStore, edge_id: str) -> dict[str, str]:
    """The stored edge, which the test has just written."""
    raw = await store.edge(edge_id)
    assert raw is not None, edge_id
    return raw


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def store(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[FleetStore]:
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


async def test_store_birth_metrics_and_view(store: FleetStore) -> None:
    assert await store.apply_status("e1", _birth(), 100.0)
    assert not await store.apply_status("e1", _birth(), 101.0)  # the retained birth again: ignored
    result = await store.apply_batch("e1", _batch(1, 2, 3), 102.0, 2.0)
    assert result.accepted == [1, 2, 3] and result.duplicates == 0 and result.lost == 0
    view = edge_view("e1", await _edge(store, "e1"), 103.0)
    assert view["status"] == "online" and view["version"] == "1.0.0"
    assert view["fps"] == 13.0 and view["metrics_seq"] == 3 and view["messages"]["metrics"] == 3
    assert view["last_seen"] == 102.0 and view["capabilities"] == {"max_fps": 30}
    assert list(await store.edges()) == ["e1"]
    assert await store.edge("nope") is None


async def test_store_detects_duplicates_and_gaps(store: FleetStore) -> None:
    await store.apply_status("e1", _birth(), 0.0)
    await store.apply_batch("e1", _batch(1, 2), 1.0, 2.0)
    assert (await store.apply_batch("e1", _batch(2), 1.1, 2.0)).duplicates == 1
    assert (await store.apply_batch("e1", _batch(5, 6), 1.2, 2.0)).lost == 0
    assert (await store.apply_batch("e1", _batch(7), 2.0, 2.0)).lost == 0
    result = await store.apply_batch("e1", _batch(8), 3.5, 2.0)
    assert result.lost == 2 and result.accepted == [8]
    view = edge_view("e1", await _edge(store, "e1"), 4.0)
    assert view["messages"] == {"metrics": 6, "events": 0, "duplicates": 1, "gaps": 2}


async def test_store_birth_of_a_new_session_resets_sequence(store: FleetStore) -> None:
    await store.apply_status("e1", _birth("a"), 0.0)
    await store.apply_batch("e1", _batch(1, 2, 3, session="a"), 1.0, 2.0)
    await store.apply_status("e1", _birth("b", 1, metrics_seq=0), 2.0)
    result = await store.apply_batch("e1", _batch(1, session="b"), 3.0, 2.0)
    assert result.accepted == [1] and result.duplicates == 0
    # a birth announcing seq 10 (reconnect of a running edge seen by a fresh store): no false gap
    await store.apply_status("e2", _birth("c", 4, metrics_seq=10), 4.0)
    result = await store.apply_batch("e2", _batch(11, session="c"), 5.0, 2.0)
    assert result.accepted == [11] and result.lost == 0


async def test_store_offline_only_from_the_current_session(store: FleetStore) -> None:
    await store.apply_status("e1", _birth("new"), 0.0)
    stale_will = StatusMsg(False, "old", "will")
    assert not await store.apply_status("e1", stale_will, 1.0)
    assert (await _edge(store, "e1"))["status"] == "online"
    assert await store.apply_status("e1", StatusMsg(False, "new", "will"), 2.0)
    raw = await _edge(store, "e1")
    assert raw["status"] == "offline" and raw["reason"] == "will"


async def test_store_a_late_will_of_an_older_connection_is_ignored(store: FleetStore) -> None:
    def birth(conn: int, seq: int) -> StatusMsg:
        return read_status({"status": "online", "session": "s", "birth_seq": seq, "conn": conn})

    assert await store.apply_status("e1", birth(1, 1), 0.0)
    assert await store.apply_status("e1", birth(1, 2), 1.0)  # a rebirth on the same connection
    assert await store.apply_status("e1", birth(2, 3), 2.0)  # reconnected (broker restart)
    will_of_conn_1 = read_status({"status": "offline", "session": "s", "reason": "will", "conn": 1})
    assert not await store.apply_status("e1", will_of_conn_1, 3.0)  # queued during the restart: stale
    assert not await store.apply_status("e1", birth(1, 2), 3.5)  # an old birth replayed
    assert (await _edge(store, "e1"))["status"] == "online"
    assert await store.apply_status("e1", read_status({"status": "offline", "session": "s", "reason": "will",
                                                        "conn": 2}), 4.0)
    assert (await _edge(store, "e1"))["status"] == "offline"


async def test_store_sweep_marks_stale_then_metrics_revive_then_forgets(store: FleetStore) -> None:
    await store.apply_status("e1", _birth(), 0.0)
    await store.apply_batch("e1", _batch(1), 46.0, 2.0)  # around for longer than stale_after: not brief
    assert await store.sweep(50.0, 45.0, 0.0) == ([], [])
    assert await store.sweep(92.0, 45.0, 0.0) == (["e1"], [])
    assert (await _edge(store, "e1"))["reason"] == "stale"
    await store.apply_batch("e1", _batch(2), 93.0, 2.0)
    raw = await _edge(store, "e1")
    assert raw["status"] == "online" and raw["reason"] == "seen"
    await store.apply_status("e1", StatusMsg(False, "s1", "shutdown"), 94.0)
    assert await store.sweep(150.0, 45.0, 100.0) == ([], [])
    assert await store.sweep(200.0, 45.0, 100.0) == ([], ["e1"])
    assert await store.edge("e1") is None and await store.edges() == {}


async def test_store_sweep_forgets_brief_edges_instead_of_keeping_them(store: FleetStore) -> None:
    """An edge heard from for less than stale_after (a made-up id on an open broker: a birth and a metrics
    message) is forgotten once silent, never marked stale nor kept for forget_after, even with 0 (never)."""
    await store.apply_status("brief", _birth(), 0.0)
    await store.apply_batch("brief", _batch(1), 1.0, 2.0)
    await store.apply_status("willed", _birth(), 0.0)
    await store.apply_status("willed", StatusMsg(False, "s1", "will"), 10.0)  # died young, said so
    await store.apply_status("kept", _birth(), 0.0)
    await store.apply_batch("kept", _batch(1), 45.0, 2.0)
    assert await store.sweep(40.0, 45.0, 0.0) == ([], [])
    assert await store.sweep(47.0, 45.0, 0.0) == ([], ["brief"])  # silent: forgotten, not stale
    assert await store.sweep(56.0, 45.0, 0.0) == ([], ["willed"])  # offline: forgotten stale_after on
    assert await store.sweep(91.0, 45.0, 0.0) == (["kept"], [])  # around for stale_after: marked as before
    assert set(await store.edges()) == {"kept"}
    await store.apply_status("brief", _birth("s2"), 100.0)  # a forgotten edge that comes back starts over
    assert float((await _edge(store, "brief"))["first_seen"]) == 100.0


async def test_store_quota_counts_and_claims(store: FleetStore) -> None:
    assert await store.add_key_frames(7, {"alice": 5, "bob": 1}, 120.0) == {"alice": 5, "bob": 1}
    assert await store.add_key_frames(7, {"alice": 4}, 120.0) == {"alice": 9}
    assert await store.add_key_frames(8, {"alice": 1}, 120.0) == {"alice": 1}
    assert await store.claim("throttle:7:alice", 60.0)
    assert not await store.claim("throttle:7:alice", 60.0)


async def test_store_events_update_counters_and_last_event(store: FleetStore) -> None:
    batch = EdgeBatch()
    batch.add_event({"phase": "new", "stream": "a", "total_fingers": 3, "ts": 1.0})
    batch.add_event({"phase": "update", "stream": "a", "total_fingers": 4, "ts": 2.0})
    await store.apply_batch("e1", batch, 5.0, 2.0)
    view = edge_view("e1", await _edge(store, "e1"), 6.0)
    assert view["messages"]["events"] == 2 and view["last_event"]["total_fingers"] == 4
    assert view["last_seen"] == 5.0


async def test_store_reads_the_fleet_in_pieces(store: FleetStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """``edges()`` reads a large fleet in several pipelines (the loop is served between them): every edge once."""
    monkeypatch.setattr("hgr.hub.fleet_store.EDGES_PER_PIPELINE", 2)
    for n in range(5):
        await store.apply_status(f"p{n}", _birth(), float(n))
    edges = await store.edges()
    assert sorted(edges) == [f"p{n}" for n in range(5)]
    assert all(h["status"] == "online" for h in edges.values())
