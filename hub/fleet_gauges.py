"""The fleet's Prometheus gauges: one series per known edge, set from the edges' views after each sweep.

An edge the fleet forgets (``EDGE_FORGET_AFTER``) takes its series with it, so the label set stays the
size of the fleet, not of every edge id ever seen.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client import Gauge

from hgr.common import metrics

_PER_EDGE = (metrics.FLEET_EDGE_UP, metrics.FLEET_EDGE_FPS, metrics.FLEET_EDGE_LATENCY, metrics.FLEET_EDGE_DROPS,
             metrics.FLEET_EDGE_CONNECTIONS)


class FleetGauges:
    def __init__(self, edges_by_status: Gauge = metrics.FLEET_EDGES) -> None:
        # The one gauge every hub in a process sets whole (the per-edge series are each edge's own): a test
        # that reads it back while another hub runs in the same process passes a gauge of its own.
        self._edges_by_status = edges_by_status
        self._labelled: set[str] = set()  # edge ids that have series now

    def update(self, views: Iterable[dict[str, Any]]) -> None:
        """Set every gauge from the edges' views (``fleet_logic.edge_view``); drop the series of edges
        that are no longer listed."""
        by_status: Counter[str] = Counter()
        seen: set[str] = set()
        for v in views:
            self._set(v, by_status, seen)
        self._finish(by_status, seen)

    async def update_in_turns(self, views: Iterable[dict[str, Any]], per_turn: int) -> None:
        """``update``, giving the event loop back after every ``per_turn`` views: on the loop rather than in a
        thread, where it fought the loop and the MQTT reader for the interpreter for a second or two (a
        20 000-edge fleet's refresh: the hub's /health p99 over 100 ms under a flood, research.abuse row 6)."""
        by_status: Counter[str] = Counter()
        seen: set[str] = set()
        for n, v in enumerate(views, 1):
            self._set(v, by_status, seen)
            if n % per_turn == 0:
                await asyncio.sleep(0)
        self._finish(by_status, seen)

    @staticmethod
    def _set(v: dict[str, Any], by_status: Counter[str], seen: set[str]) -> None:
        edge_id = v["edge_id"]
        seen.add(edge_id)
        by_status[v["status"]] += 1
        metrics.FLEET_EDGE_UP.labels(edge_id).set(1 if v["status"] == "online" else 0)
        metrics.FLEET_EDGE_FPS.labels(edge_id).set(v["fps"])
        metrics.FLEET_EDGE_LATENCY.labels(edge_id).set(v["latency_ms"].get("p95", 0.0) / 1000.0)
        metrics.FLEET_EDGE_DROPS.labels(edge_id).set(v["drops"])
        metrics.FLEET_EDGE_CONNECTIONS.labels(edge_id).set(v["connections"])

    def _finish(self, by_status: Counter[str], seen: set[str]) -> None:
        for status in ("online", "offline"):
            self._edges_by_status.labels(status).set(by_status.get(status, 0))
        for gone in self._labelled - seen:
            for gauge in _PER_EDGE:
                try:
                    gauge.remove(gone)
                except KeyError:
                    pass
        self._labelled = seen
