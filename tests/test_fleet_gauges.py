"""hub/fleet_gauges.py: one series per known edge, set from the edges' views; a forgotten edge's go too."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from hgr.hub.fleet_gauges import FleetGauges


def _view(edge_id: str, status: str = "online", fps: float = 25.0) -> dict[str, Any]:
    return {"edge_id": edge_id, "status": status, "fps": fps, "latency_ms": {"p95": 40.0}, "drops": 3,
            "connections": 2}


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_gauges_follow_the_views_and_forgotten_edges_lose_their_series() -> None:
    gauges = FleetGauges()
    gauges.update([_view("gauge-a"), _view("gauge-b", "offline", fps=0.0)])
    assert _value("hgr_fleet_edge_up", edge_id="gauge-a") == 1 and _value("hgr_fleet_edge_up", edge_id="gauge-b") == 0
    assert _value("hgr_fleet_edge_fps", edge_id="gauge-a") == 25.0
    assert _value("hgr_fleet_edge_latency_p95_seconds", edge_id="gauge-a") == 0.04
    assert _value("hgr_fleet_edge_dropped_frames", edge_id="gauge-a") == 3
    assert _value("hgr_fleet_edge_connections", edge_id="gauge-a") == 2
    assert _value("hgr_fleet_edges", status="online") == 1 and _value("hgr_fleet_edges", status="offline") == 1
    gauges.update([_view("gauge-a")])  # b forgotten
    assert _value("hgr_fleet_edge_up", edge_id="gauge-b") is None
    assert _value("hgr_fleet_edge_fps", edge_id="gauge-b") is None
    assert _value("hgr_fleet_edges", status="offline") == 0
    gauges.update([])
    assert _value("hgr_fleet_edge_up", edge_id="gauge-a") is None
