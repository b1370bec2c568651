"""Source of the Grafana dashboards in ``dashboards/``: ``python monitoring/grafana/dashboards.py``.

The JSON files are what Grafana provisions; this module only writes them, so a panel is one line
here instead of forty lines of JSON. tests/test_monitoring.py checks the files match this source and
evaluates every query against a Prometheus that scrapes a real hub and edge.

Conventions (see monitoring/alerts.yml): jobs ``hgr-hub`` / ``hgr-edge``; edge-only metrics carry no
``service`` label and are read with ``job="hgr-edge"``; fleet gauges are read with ``max by (edge_id)``
because every hub replica may export them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yml
RATE = "$__rate_interval"
EDGE = 'job="hgr-edge", edge_id="$edge_id"'  # scraped edge series of the selected edge
FLEET = 'edge_id="$edge_id"'  # the hub's fleet gauges of the selected edge


@dataclass
class Panel:
    title: str
    queries: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | bargauge
    width: int = 8
    height: int = 8
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    title: str
    panels: list[Panel]


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for i, (expr, legend) in enumerate(p.queries):
        target: dict[str, Any] = {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
                                  "legendFormat": legend or "__auto", "range": p.kind == "timeseries",
                                  "instant": p.kind != "timeseries"}
        targets.append(target)
    defaults: dict[str, Any] = {"unit": p.unit}
    options: dict[str, Any]
    if p.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                              "spanNulls": True}
        options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
    elif p.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "colorMode": "value", "graphMode": "area", "textMode": "auto", "justifyMode": "auto",
                   "orientation": "auto"}
    else:
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "orientation": "horizontal", "displayMode": "basic", "showUnfilled": True}
    options.update(p.options)
    return {"id": pid, "type": p.kind, "title": p.title, "description": p.description,
            "datasource": DATASOURCE, "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
            "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options}


def dashboard(uid: str, title: str, description: str, rows: list[Row],
              variables: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row in rows:
        panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y, x, row_h = pid + 1, y + 1, 0, 0
        for p in row.panels:
            if x + p.width > 24:
                x, y, row_h = 0, y + row_h, 0
            panels.append(_panel(p, pid, x, y))
            pid, x, row_h = pid + 1, x + p.width, max(row_h, p.height)
        y += row_h
    return {
        "uid": uid, "title": title, "description": description, "tags": ["hgr"], "editable": True,
        "schemaVersion": 39, "version": 1, "refresh": "10s", "timezone": "browser",
        "time": {"from": "now-1h", "to": "now"}, "graphTooltip": 1, "panels": panels,
        "templating": {"list": variables or []}, "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["hgr"], "asDropdown": True, "title": "hgr dashboards"}],
    }


def quantiles(metric: str, selector: str, qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list[tuple[str, str]]:
    return [(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
             f"p{int(q * 100)}") for q in qs]


# ------------------------------------------------------------------------------------------ fleet
def fleet_overview() -> dict[str, Any]:
    return dashboard("hgr-fleet", "hgr / Fleet overview",
                     "Edges online, fleet throughput and latency, drops, errors and API key usage.", [
        Row("Fleet", [
            Panel("Edges online", [("sum(max by (edge_id) (hgr_fleet_edge_up))", "online")], kind="stat",
                  width=4, height=5),
            Panel("Edges offline", [("sum(1 - max by (edge_id) (hgr_fleet_edge_up))", "offline")], kind="stat",
                  width=4, height=5, options={"colorMode": "background"}),
            Panel("Fleet fps", [("sum(max by (edge_id) (hgr_fleet_edge_fps))", "fps")], unit="fps", kind="stat",
                  width=4, height=5),
            Panel("Open streams", [("sum(max by (edge_id) (hgr_fleet_edge_connections))", "streams")],
                  kind="stat", width=4, height=5),
            Panel("Hub replicas up", [('sum(up{job="hgr-hub"})', "replicas")], kind="stat", width=4, height=5),
            Panel("Known edges by status", [("max by (status) (hgr_fleet_edges)", "{{status}}")], kind="stat",
                  width=4, height=5),
        ]),
        Row("Throughput and latency", [
            Panel("Frames per second by edge", [("max by (edge_id) (hgr_fleet_edge_fps)", "{{edge_id}}")],
                  unit="fps", width=12),
            Panel("p95 frame latency by edge (reported)",
                  [("max by (edge_id) (hgr_fleet_edge_latency_p95_seconds)", "{{edge_id}}")], unit="s", width=12),
            Panel("Frame latency percentiles (scraped edges)",
                  quantiles("hgr_frame_latency_seconds", 'job="hgr-edge"'), unit="s", width=12,
                  description="Arrival at the edge to result sent, over every edge Prometheus scrapes."),
            Panel("REST latency percentiles (hub)",
                  quantiles("hand_gesture_request_duration_seconds",
                            'job="hgr-hub", route!~"/metrics|/health|/ready"'), unit="s", width=12),
        ]),
        Row("Drops and errors", [
            Panel("Dropped frames per second by edge",
                  [(f"max by (edge_id) (rate(hgr_fleet_edge_dropped_frames[{RATE}]))", "{{edge_id}}")],
                  unit="fps", width=8),
            Panel("Drop ratio by edge", [("hgr:fleet_drop_ratio:rate5m", "{{edge_id}}")], unit="percentunit",
                  width=8, description="dropped / (dropped + processed); alert above 30 % for 10 minutes."),
            Panel("Errors returned to clients",
                  [(f"sum by (service, code) (rate(hand_gesture_errors_total[{RATE}]))", "{{service}} {{code}}")],
                  unit="reqps", width=8),
            Panel("HTTP 5xx ratio", [("hgr:http_error_ratio:rate5m", "{{service}}")], unit="percentunit",
                  width=8),
            Panel("Inference error ratio", [("hgr:inference_error_ratio:rate5m", "{{service}}")],
                  unit="percentunit", width=8),
            Panel("Fleet messages lost (sequence gaps)",
                  [(f"sum(increase(hgr_fleet_sequence_gaps_total[{RATE}]))", "gaps")], width=8),
        ]),
        Row("API keys", [
            Panel("Top keys by frames (current window)", [("topk(10, max by (key) (hgr_fleet_key_frames))", "{{key}}")],
                  kind="bargauge", width=12, height=9),
            Panel("Frames by key", [("max by (key) (hgr_fleet_key_frames)", "{{key}}")], width=12, height=9),
        ]),
    ])


# ------------------------------------------------------------------------------------------ edge
def edge_detail() -> dict[str, Any]:
    variable = {
        "name": "edge_id", "label": "Edge", "type": "query", "datasource": DATASOURCE,
        "definition": "label_values(edge_id)", "query": {"query": "label_values(edge_id)", "refId": "edge_id"},
        "refresh": 2, "sort": 1, "includeAll": False, "multi": False, "current": {}, "options": [],
        "hide": 0, "regex": "", "skipUrlSync": False,
    }
    return dashboard("hgr-edge", "hgr / Edge detail",
                     "One edge: what it reports to the hub over MQTT, and its own metrics when Prometheus "
                     "scrapes it (job hgr-edge, targets/edges*.yml).", [
        Row("Reported to the hub (MQTT)", [
            Panel("Online", [(f"max(hgr_fleet_edge_up{{{FLEET}}})", "up")], kind="stat", width=4, height=5),
            Panel("fps", [(f"max(hgr_fleet_edge_fps{{{FLEET}}})", "fps")], unit="fps", kind="stat", width=4,
                  height=5),
            Panel("p95 latency", [(f"max(hgr_fleet_edge_latency_p95_seconds{{{FLEET}}})", "p95")], unit="s",
                  kind="stat", width=4, height=5),
            Panel("Open streams", [(f"max(hgr_fleet_edge_connections{{{FLEET}}})", "streams")], kind="stat",
                  width=4, height=5),
            Panel("Dropped frames (total)", [(f"max(hgr_fleet_edge_dropped_frames{{{FLEET}}})", "dropped")],
                  kind="stat", width=4, height=5),
            Panel("Drop ratio", [(f"hgr:fleet_drop_ratio:rate5m{{{FLEET}}}", "ratio")], unit="percentunit",
                  kind="stat", width=4, height=5),
            Panel("fps and drops over time", [
                (f"max(hgr_fleet_edge_fps{{{FLEET}}})", "processed fps"),
                (f"max(rate(hgr_fleet_edge_dropped_frames{{{FLEET}}}[{RATE}]))", "dropped fps")],
                unit="fps", width=12),
            Panel("p95 latency over time", [(f"max(hgr_fleet_edge_latency_p95_seconds{{{FLEET}}})", "p95")],
                  unit="s", width=12),
        ]),
        Row("Frames (scraped)", [
            Panel("Frames received by encoding",
                  [(f"sum by (encoding) (rate(hgr_frames_received_total{{{EDGE}}}[{RATE}]))", "{{encoding}}")],
                  unit="fps", width=8),
            Panel("Frames processed", [(f"sum(rate(hgr_frames_processed_total{{{EDGE}}}[{RATE}]))", "processed")],
                  unit="fps", width=8),
            Panel("Frames dropped by reason",
                  [(f"sum by (reason) (rate(hgr_frames_dropped_total{{{EDGE}}}[{RATE}]))", "{{reason}}")],
                  unit="fps", width=8),
            Panel("Frame latency", quantiles("hgr_frame_latency_seconds", EDGE), unit="s", width=8),
            Panel("Queue delay (arrival to inference)", quantiles("hgr_frame_queue_delay_seconds", EDGE),
                  unit="s", width=8),
            Panel("Gestures seen",
                  [(f"sum by (gesture) (rate(hgr_gestures_total{{{EDGE}}}[{RATE}]))", "{{gesture}}")],
                  unit="hz", width=8),
        ]),
        Row("Streams and inference (scraped)", [
            Panel("WebSocket streams", [(f"sum(hgr_websocket_connections{{{EDGE}}})", "open")], width=8),
            Panel("Streams closed by code",
                  [(f"sum by (code) (increase(hgr_websocket_closed_total{{{EDGE}}}[{RATE}]))", "{{code}}")],
                  width=8),
            Panel("Errors by code",
                  [(f"sum by (code) (rate(hand_gesture_errors_total{{{EDGE}}}[{RATE}]))", "{{code}}")],
                  unit="reqps", width=8),
            Panel("Inference time", quantiles("ml_inference_duration_seconds", EDGE, qs=(0.5, 0.95)), unit="s",
                  width=8),
            Panel("Batch size", quantiles("batch_processing_size", EDGE, qs=(0.5, 0.95)), width=8),
            Panel("Workers alive / in flight", [
                (f"sum(hgr_workers_alive{{{EDGE}}})", "workers"),
                (f"sum(active_requests{{{EDGE}}})", "in flight")], width=8),
        ]),
        Row("MQTT and process (scraped)", [
            Panel("Broker connected", [(f"max(hgr_mqtt_connected{{{EDGE}}})", "connected")], kind="stat",
                  width=4, height=6),
            Panel("Outbox", [(f"sum(hgr_mqtt_outbox_messages{{{EDGE}}})", "waiting")], kind="stat", width=4,
                  height=6),
            Panel("Messages published by kind",
                  [(f"sum by (kind) (rate(hgr_mqtt_published_total{{{EDGE}}}[{RATE}]))", "{{kind}}")],
                  unit="hz", width=8, height=6),
            Panel("Memory / CPU", [
                (f"max(process_resident_memory_bytes{{{EDGE}}}) / on () group_left () hgr:memory_limit_bytes",
                 "memory of limit"),
                (f"max(rate(process_cpu_seconds_total{{{EDGE}}}[{RATE}]))", "CPU (cores)")],
                unit="percentunit", width=8, height=6),
        ]),
    ], variables=[variable])


# ------------------------------------------------------------------------------------------ hub
HUB = 'job="hgr-hub"'


def hub_overview() -> dict[str, Any]:
    return dashboard("hgr-hub", "hgr / Hub", "REST API, inference, batching, cache, rate limits, Redis and "
                     "fleet ingest of the hub replicas.", [
        Row("API", [
            Panel("Requests by route and status", [
                (f"sum by (route, status) (rate(hand_gesture_requests_total{{{HUB}}}[{RATE}]))", "{{route}} {{status}}")],
                unit="reqps", width=12),
            Panel("Latency by route (p95)", [
                (f"histogram_quantile(0.95, sum by (route, le) (rate(hand_gesture_request_duration_seconds_bucket{{{HUB}}}[{RATE}])))",
                 "{{route}}")], unit="s", width=12),
            Panel("REST latency percentiles",
                  quantiles("hand_gesture_request_duration_seconds", f'{HUB}, route!~"/metrics|/health|/ready"'), unit="s",
                  width=8),
            Panel("5xx ratio", [('hgr:http_error_ratio:rate5m{service="hub"}', "5xx")], unit="percentunit",
                  width=8),
            Panel("Errors by code",
                  [(f"sum by (code) (rate(hand_gesture_errors_total{{{HUB}}}[{RATE}]))", "{{code}}")],
                  unit="reqps", width=8),
        ]),
        Row("Inference and batching", [
            Panel("Images through the model",
                  [(f"sum by (model, status) (rate(ml_inference_total{{{HUB}}}[{RATE}]))", "{{model}} {{status}}")],
                  unit="hz", width=8),
            Panel("Inference time", quantiles("ml_inference_duration_seconds", HUB), unit="s", width=8),
            Panel("In flight / workers", [
                (f"sum(active_requests{{{HUB}}})", "in flight"),
                (f"sum(hgr_workers_alive{{{HUB}}})", "workers alive"),
                (f"sum(increase(hgr_worker_restarts_total{{{HUB}}}[{RATE}]))", "worker restarts")], width=8),
            Panel("Batch size", quantiles("batch_processing_size", HUB, qs=(0.5, 0.95)), width=8),
            Panel("Mean batch size", [
                (f"sum(rate(batch_processing_size_sum{{{HUB}}}[{RATE}])) / sum(rate(batch_processing_size_count{{{HUB}}}[{RATE}]))",
                 "mean")], width=8),
            Panel("Batch time", quantiles("batch_processing_duration_seconds", HUB, qs=(0.5, 0.95)), unit="s",
                  width=8),
            Panel("Model loaded", [(f"min by (model) (model_loaded{{{HUB}}})", "{{model}}")], kind="stat",
                  width=8, height=5),
        ]),
        Row("Cache and rate limits", [
            Panel("Cache look-ups",
                  [(f"sum by (result) (rate(hgr_cache_requests_total{{{HUB}}}[{RATE}]))", "{{result}}")],
                  unit="hz", width=8),
            Panel("Cache hit ratio", [
                ((f'sum(rate(hgr_cache_requests_total{{{HUB}, result="hit"}}[{RATE}]) or rate(hgr_cache_requests_total{{{HUB}}}[{RATE}]) * 0)'
                 f" / sum(rate(hgr_cache_requests_total{{{HUB}}}[{RATE}]))"), "hit ratio")], unit="percentunit",
                  width=8),
            Panel("Rate-limit decisions",
                  [(f"sum by (decision) (rate(hgr_rate_limit_decisions_total{{{HUB}}}[{RATE}]))", "{{decision}}")],
                  unit="hz", width=8),
            Panel("Rejected share", [("hgr:rate_limit_rejected_ratio:rate5m", "rejected")], unit="percentunit",
                  width=8),
            Panel("Redis reachable", [(f"min(hgr_redis_up{{{HUB}}})", "redis")], kind="stat", width=8, height=5),
        ]),
        Row("Fleet ingest and processes", [
            Panel("Fleet messages by kind",
                  [(f"sum by (kind) (rate(hgr_fleet_messages_total{{{HUB}}}[{RATE}]))", "{{kind}}")], unit="hz",
                  width=8),
            Panel("Broker connected by replica", [(f"hgr_mqtt_connected{{{HUB}}}", "{{instance}}")], width=8),
            Panel("Memory of limit by replica", [
                (f"process_resident_memory_bytes{{{HUB}}} / on () group_left () hgr:memory_limit_bytes",
                 "{{instance}}")], unit="percentunit", width=8),
            Panel("CPU by replica (cores)",
                  [(f"rate(process_cpu_seconds_total{{{HUB}}}[{RATE}])", "{{instance}}")], width=8),
        ]),
    ])


DASHBOARDS = {"hgr-fleet-overview.json": fleet_overview, "hgr-edge-detail.json": edge_detail,
              "hgr-hub.json": hub_overview}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, build in DASHBOARDS.items():
        (OUT / name).write_text(render(build))
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
