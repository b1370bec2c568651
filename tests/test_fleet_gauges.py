"""hub/fleet_gauges.py: one series per known edge, set from the edges' views; a forgotten edge's go too."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from hgr.hub.fleet_gauges import FleetGauges


def _view(edge_id: str, status: str = "online", fps: float = 25.0) -> dict[str, Any]:
    return {"edge_id": edge_id, "status": status, "fps": fps, "latency_ms": {"p95": 40.0}, "drops": 3,
            "connections": 2}


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _own_edges_gauge() -> tuple[Gauge, CollectorRegistry]:
    """``hgr_fleet_edges`` in a registry of the test's own: the process-wide one is set whole by any hub
    running in this pytest process (a fixture's hub in a thread set it to 0 between a refresh and its check)."""
    registry = CollectorRegistry()
    return Gauge("hgr_fleet_edges", "Known edges by status.", ["status"], registry=registry), registry


def test_gauges_follow_the_views_and_forgotten_edges_lose_their_series() -> None:
    edges, registry = _own_edges_gauge()
    gauges = FleetGauges(edges)
    gauges.update([_view("gauge-a"), _view("gauge-b", "offline", fps=0.0)])
    assert _value("hgr_fleet_edge_up", edge_id="gauge-a") == 1 and _value("hgr_fleet_edge_up", edge_id="gauge-b") == 0
    assert _value("hgr_fleet_edge_fps", edge_id="gauge-a") == 25.0
    assert _value("hgr_fleet_edge_latency_p95_seconds", edge_id="gauge-a") == 0.04
    assert _value("hgr_fleet_edge_dropped_frames", edge_id="gauge-a") == 3
    assert _value("hgr_fleet_edge_connections", edge_id="gauge-a") == 2
    assert registry.get_sample_value("hgr_fleet_edges", {"status": "online"}) == 1
    assert registry.get_sample_value("hgr_fleet_edges", {"status": "offline"}) == 1
    gauges.update([_view("gauge-a")])  # b forgotten
    assert _value("hgr_fleet_edge_up", edge_id="gauge-b") is None
    assert _value("hgr_fleet_edge_fps", edge_id="gauge-b") is None
    assert registry.get_sample_value("hgr_fleet_edges", {"status": "offline"}) == 0
    gauges.update([])
    assert _value("hgr_fleet_edge_up", edge_id="gauge-a") is None


async def test_gauges_set_in_turns_give_the_loop_back_and_end_as_one_update() -> None:
    """A refresh on the loop (``update_in_turns``) yields every ``per_turn`` views, and ends where ``update``
    ends: every listed edge's series, none of the unlisted."""
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    edges, registry = _own_edges_gauge()
    gauges = FleetGauges(edges)
    gauges.update([_view("turn-gone")])
    counter = asyncio.create_task(count_turns())
    await asyncio.sleep(0)
    try:
        before = turns
        await gauges.update_in_turns((_view(f"turn-{n}") for n in range(10)), per_turn=2)
        assert turns - before >= 5  # the other task ran between the turns
    finally:
        counter.cancel()
    assert all(_value("hgr_fleet_edge_up", edge_id=f"turn-{n}") == 1 for n in range(10))
    assert _value("hgr_fleet_edge_up", edge_id="turn-gone") is None
    assert registry.get_sample_value("hgr_fleet_edges", {"status": "online"}) == 10
