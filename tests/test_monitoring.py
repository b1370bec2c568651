"""Monitoring: Prometheus config, alert rules, Grafana dashboards.

Static: ``promtool check config``, ``promtool check rules``, the rule unit tests
(monitoring/alerts_test.yml), the dashboards match their source (monitoring/grafana/dashboards.py), every
query parses, and every metric a query names is one the project defines.

Live: a real Prometheus scrapes a real hub and two real edges serving real traffic (hand photos over
REST and WebSocket, bad requests, a rate-limit burst, fleet reporting over a real Mosquitto), and every
expression of the dashboards and the rules is evaluated through its HTTP API and must return data.
Two transformations, and only these, are applied before evaluating (see ``live_expressions``):
- an alert is evaluated without its final threshold comparison (``X > 0.05`` → ``X``): the quantity it
  watches must exist; whether it crosses the threshold is what the unit tests check;
- Grafana's variables are replaced: ``$__rate_interval`` by a window covering the traffic, ``$edge_id``
  by the live edge's id.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import yaml

from tests.browser import CHROMIUM, CHROMIUM_ARGS, need_chromium
from tests.support import free_port, need, stop_process, wait_for_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
RULES = MONITORING / "alerts.yml"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
sys.path.insert(0, str(MONITORING / "grafana"))
import dashboards as dashboard_source

pytestmark = pytest.mark.service  # starts processes (servers, tools) or needs a broker

LIVE_EDGE = "edge-live"
ARTIFACTS = ROOT / "artifacts"
PICTURED_RANGE = "1m"
PICTURED_SAMPLES = 30  # of the live edge's fps: the picture waits for half a minute of traffic
# The fleet overview's time series drawn for docs/img/dashboard.jpg (Grafana itself does not install here).
PICTURED = ("hgr-fleet-overview.json", ("Frames per second by edge", "Frame latency percentiles (scraped edges)",
                                        "REST latency percentiles (hub)", "Errors returned to clients"))
RATE_WINDOW = "2m"  # replaces $__rate_interval: the whole live run fits in it


def need_promtool() -> str:
    path = shutil.which("promtool")
    need(path is not None, "promtool is not installed (apt-get install prometheus)")
    return str(path)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need_promtool(), *args], check=False, capture_output=True, text=True, timeout=120,
                          cwd=MONITORING)


# ------------------------------------------------------------------------------ expressions
def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def dashboard_files() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL as written) for every target of every panel."""
    out = []
    for name, dash in dashboard_files().items():
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                out.append((f"{name}: {panel['title']} [{target['refId']}]", target["expr"]))
    return out


_THRESHOLD = re.compile(r"^(?P<value>.*?)\s*(==|!=|>=|<=|>|<)\s*-?[0-9.]+(e[+-]?\d+)?\s*$", re.DOTALL)


def without_threshold(expr: str) -> str:
    match = _THRESHOLD.match(expr.strip())
    assert match, f"alert expression does not end in a threshold comparison: {expr}"
    return match.group("value")


def substitute(expr: str, edge_id: str = LIVE_EDGE) -> str:
    return expr.replace("$__rate_interval", RATE_WINDOW).replace("$edge_id", edge_id)


def live_expressions() -> list[tuple[str, str]]:
    """(where, PromQL to evaluate) for the rules and the dashboards, with the documented transformations."""
    out = []
    for rule in rules():
        if "record" in rule:
            out.append((f"alerts.yml record {rule['record']}", rule["expr"]))
        else:
            out.append((f"alerts.yml alert {rule['alert']}", without_threshold(rule["expr"])))
    out += [(where, substitute(expr)) for where, expr in dashboard_queries()]
    return out


# ------------------------------------------------------------------------------ static checks
def test_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_and_annotations() -> None:
    tested = set(re.findall(r"alertname: (\w+)", (MONITORING / "alerts_test.yml").read_text()))
    alerts = [r for r in rules() if "alert" in r]
    assert {r["alert"] for r in alerts} <= tested
    for rule in alerts:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_seed_and_fleet_alerts_exist() -> None:
    names = {r["alert"] for r in rules() if "alert" in r}
    assert {"HgrHighErrorRate", "HgrHighLatency", "HgrHighMemory", "HgrHighCpu", "HgrServiceDown",
            "HgrEdgeOffline", "HgrFrameDropRatioHigh", "HgrRateLimitRejectionsSpiking",
            "HgrMqttOutboxDropping"} <= names
    thresholds = {r["alert"]: r["expr"] for r in rules() if "alert" in r}
    assert thresholds["HgrHighErrorRate"].endswith("> 0.05")
    assert thresholds["HgrHighLatency"].endswith("> 2")
    assert thresholds["HgrHighMemory"].endswith("> 0.8") and thresholds["HgrHighCpu"].endswith("> 0.8")


def test_dashboards_match_their_source() -> None:
    files = {p.name for p in DASHBOARDS.glob("*.json")}
    assert files == set(dashboard_source.DASHBOARDS)
    for name, build in dashboard_source.DASHBOARDS.items():
        assert (DASHBOARDS / name).read_text() == dashboard_source.render(build), \
            f"{name} is stale: run python monitoring/grafana/dashboards.py"


def test_dashboards_are_well_formed() -> None:
    provisioned = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/hgr.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    uids = set()
    for name, dash in dashboard_files().items():
        assert dash["uid"] not in uids
        uids.add(dash["uid"])
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in dash["panels"]:
            pos = panel["gridPos"]
            assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, (name, panel["title"])
            if panel["type"] == "row":
                continue
            assert panel["targets"], (name, panel["title"])
            assert panel["datasource"]["uid"] == uid
            assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    edge = dashboard_files()["hgr-edge-detail.json"]
    variable = edge["templating"]["list"][0]
    assert variable["name"] == "edge_id" and variable["query"]["query"] == "label_values(edge_id)"
    assert all("$edge_id" in t["expr"] for p in edge["panels"] for t in p.get("targets", []))
    overview = json.dumps(dashboard_files()["hgr-fleet-overview.json"])
    for metric in ("hgr_fleet_edge_up", "hgr_fleet_edge_fps", "hgr_frame_latency_seconds_bucket",
                   "hgr_fleet_edge_dropped_frames", "hand_gesture_errors_total", "hgr_fleet_key_frames"):
        assert metric in overview, metric
    hub = json.dumps(dashboard_files()["hgr-hub.json"])
    for metric in ("hand_gesture_request_duration_seconds_bucket", "ml_inference_total", "batch_processing_size_bucket",
                   "hgr_cache_requests_total", "hgr_rate_limit_decisions_total"):
        assert metric in hub, metric


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool parses each dashboard query (as a recording rule) — a typo fails here, not in Grafana."""
    queries = dashboard_queries()
    doc = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": substitute(expr)} for i, (_, expr) in enumerate(queries)]}]}
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump(doc))
    result = subprocess.run([need_promtool(), "check", "rules", str(path)], check=False, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout


_FUNCTIONS_AND_KEYWORDS = {
    "sum", "max", "min", "avg", "count", "topk", "bottomk", "by", "without", "on", "ignoring", "group_left",
    "group_right", "rate", "increase", "irate", "histogram_quantile", "vector", "scalar", "or", "and",
    "unless", "offset", "bool", "abs", "clamp_min", "clamp_max", "label_replace", "deriv", "delta", "time",
    "e", "inf", "nan",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (label matchers, grouping lists and strings removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    tokens = set(re.findall(r"(?<![\w.])[a-zA-Z_:][\w:]*", expr))
    return {t for t in tokens if t.lower() not in _FUNCTIONS_AND_KEYWORDS and not re.fullmatch(r"\d+\w*", t)}


def defined_metric_names() -> set[str]:
    """Every series name the services export: common/metrics.py plus the client's process_* and up."""
    from prometheus_client import REGISTRY

    import hgr.common.metrics  # noqa: F401  (registers everything)

    names = {"up"}
    for family in REGISTRY.collect():
        names.add(family.name)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    names |= {"process_resident_memory_bytes", "process_cpu_seconds_total"}  # Linux only, always here
    names |= {r["record"] for r in rules() if "record" in r}
    return names


def test_queries_name_only_metrics_that_exist() -> None:
    known = defined_metric_names()
    unknown = {}
    for where, expr in [(w, e) for w, e in dashboard_queries()] + [
            (r.get("alert") or r["record"], r["expr"]) for r in rules()]:
        missing = metric_names(expr) - known
        if missing:
            unknown[where] = sorted(missing)
    assert not unknown, unknown
    assert metric_names('sum by (le) (rate(hgr_frame_latency_seconds_bucket{job="x"}[5m])) / on () foo:bar') == {
        "hgr_frame_latency_seconds_bucket", "foo:bar"}


def test_alerts_read_edge_only_metrics_per_job() -> None:
    """Metrics without a `service` label are exported (as zeros) by every process: filter them by job."""
    unlabelled_edge_metrics = ("hgr_frame_latency_seconds", "hgr_frames_", "hgr_websocket_", "hgr_gestures_total",
                               "hgr_frame_queue_delay_seconds")
    for where, expr in dashboard_queries() + [(r.get("alert") or r["record"], r["expr"]) for r in rules()]:
        for selector in re.findall(r"([a-z_:]+)(\{[^}]*\})?", expr):
            if selector[0].startswith(unlabelled_edge_metrics):
                assert 'job="hgr-edge"' in selector[1], (where, selector)
        if "hgr_redis_up" in expr:
            assert 'hgr_redis_up{job="hgr-hub"}' in expr, where


# ------------------------------------------------------------------------------ live
def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            cwd=log.parent)


def live_prometheus_config(hub_port: int, edges: dict[str, int], rules_path: Path) -> dict[str, Any]:
    """monitoring/prometheus.yml with its service discovery swapped for the local processes."""
    config: dict[str, Any] = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules_path)]
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs", None)
        job.pop("file_sd_configs", None)
        if job["job_name"] == "hgr-hub":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{hub_port}"]}]
        elif job["job_name"] == "hgr-edge":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"], "labels": {"edge_id": edge_id}}
                                     for edge_id, port in edges.items()]
    assert {j["job_name"] for j in config["scrape_configs"]} == {"hgr-hub", "hgr-edge"}
    return config


class LiveStack:
    def __init__(self, tmp: Path, mqtt_url: str, redis_url: str) -> None:
        self.tmp, self.procs = tmp, list[subprocess.Popen[bytes]]()
        ports: set[int] = set()
        while len(ports) < 5:
            ports.add(free_port())
        self.hub_port, self.edge_port, self.cut_port, self.prom_port, dead_port = sorted(ports)
        self.prefix = f"hgr-mon-{os.getpid()}-{int(time.time())}"
        self.key = "monitor-key-" + os.urandom(8).hex()
        dead_broker = f"mqtt://127.0.0.1:{dead_port}"  # nothing listens: that edge's outbox overflows
        base = {**os.environ, "WORKERS": "1", "LOG_FORMAT": "text", "LOG_LEVEL": "warning",
                "MQTT_TOPIC_PREFIX": self.prefix, "METRICS_INTERVAL": "0.5", "HOST": "127.0.0.1"}
        self.hub_env = {**base, "PORT": str(self.hub_port), "MQTT_URL": mqtt_url, "REDIS_URL": redis_url,
                        "REDIS_KEY_PREFIX": f"{self.prefix}:", "RATE_LIMIT_REQUESTS": "15",
                        "RATE_LIMIT_WINDOW": "600", "FLEET_QUOTA_FRAMES": "1000000", "EDGE_STALE_AFTER": "30"}
        self.edge_env = {**base, "EDGE_PORT": str(self.edge_port), "EDGE_ID": LIVE_EDGE, "MQTT_URL": mqtt_url,
                         "AUTH_ENABLED": "true", "API_KEYS": f"monitor:{self.key}"}
        self.cut_env = {**base, "EDGE_PORT": str(self.cut_port), "EDGE_ID": "edge-cut", "MQTT_URL": dead_broker,
                        "MQTT_OUTBOX_SIZE": "1", "METRICS_INTERVAL": "0.2"}

    def start_services(self) -> None:
        hgr = [sys.executable, "-m", "hgr"]
        for name, env, port, path in (("hub", self.hub_env, self.hub_port, "/ready"),
                                      ("edge", self.edge_env, self.edge_port, "/ready"),
                                      ("edge-cut", self.cut_env, self.cut_port, "/health")):
            log = self.tmp / f"{name}.log"
            proc = _start([*hgr, "hub" if name == "hub" else "edge"], {**env, "PYTHONPATH": str(ROOT)}, log)
            self.procs.append(proc)
            try:
                wait_ready(f"http://127.0.0.1:{port}", proc, 120, path=path)
            except (RuntimeError, TimeoutError) as exc:
                raise AssertionError(f"{exc}:\n{log.read_text()[-3000:]}") from None

    def start_prometheus(self) -> None:
        prometheus = shutil.which("prometheus")
        need(prometheus is not None, "prometheus is not installed (apt-get install prometheus)")
        rules_copy = self.tmp / "alerts.yml"
        rules_copy.write_text(RULES.read_text())
        config = live_prometheus_config(self.hub_port, {LIVE_EDGE: self.edge_port, "edge-cut": self.cut_port},
                                        rules_copy)
        (self.tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = self.tmp / "prometheus.log"
        self.procs.append(_start([str(prometheus), f"--config.file={self.tmp / 'prometheus.yml'}",
                                  f"--storage.tsdb.path={self.tmp / 'tsdb'}",
                                  f"--web.listen-address=127.0.0.1:{self.prom_port}"], dict(os.environ), log))
        wait_for_port("127.0.0.1", self.prom_port, 60)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc, 15)


@pytest.fixture
def live_stack(tmp_path: Path, private_mosquitto: tuple[str, subprocess.Popen[bytes]], redis_url: str,
               model_path: str) -> Iterator[LiveStack]:
    need(shutil.which("prometheus") is not None, "prometheus is not installed (apt-get install prometheus)")
    need_chromium()
    stack = LiveStack(tmp_path, private_mosquitto[0], redis_url)
    try:
        stack.start_services()
        stack.start_prometheus()
        yield stack
    finally:
        stack.stop()


async def rest_traffic(client: httpx.AsyncClient, hub: str, photos: list[Path], stop: asyncio.Event
                       ) -> dict[int, int]:
    """Once a second until ``stop``: a real detection (three photos, then cache hits), a corrupt image
    and a malformed body; past RATE_LIMIT_REQUESTS everything is refused with 429."""
    statuses: dict[int, int] = {}

    async def post(body: Any) -> None:
        response = await client.post(f"{hub}/detect-fingers", json=body, timeout=60)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    statuses[(await client.get(f"{hub}/no-such-route")).status_code] = 1
    images = [base64.b64encode(p.read_bytes()).decode() for p in photos[:3]]
    corrupt = base64.b64encode(b"\xff\xd8\xff\xe0 not really a jpeg").decode()
    n = 0
    while not (stop.is_set() and statuses.get(429)) and n < 120:  # ends having been limited
        await post({"image_base64": images[n % len(images)]})
        await post({"image_base64": corrupt})
        await post({"image_base64": "%%% not base64 %%%"})
        n += 1
        await asyncio.sleep(1)
    return statuses


async def stream_frames(edge_ws: str, key: str, photos: list[Path], stop: asyncio.Event) -> dict[str, int]:
    """A client that breaks the protocol and is closed (1003), then a camera-like client: bursts of
    frames (so latest-frame-wins drops some) and a bad message, until ``stop``."""
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    frames = [p.read_bytes() for p in photos[:4]]
    seen = {"results": 0, "errors": 0}

    async def read(ws: Any) -> None:
        async for message in ws:
            kind = msgpack.unpackb(message).get("type")
            if kind in ("result", "error"):
                seen[kind + "s"] += 1

    msgpack_v1 = [Subprotocol("hgr.msgpack.v1")]
    async with connect(edge_ws, additional_headers={"x-api-key": key}, subprotocols=msgpack_v1) as ws:
        await ws.send("text on a binary connection")
        await asyncio.wait_for(ws.wait_closed(), 30)
        assert ws.close_code is not None  # set once the connection is closed
        seen["closed_with"] = ws.close_code
    async with connect(edge_ws, additional_headers={"x-api-key": key}, subprotocols=msgpack_v1,
                       max_size=None) as ws:
        reader = asyncio.create_task(read(ws))
        await ws.send(b"\x00 neither msgpack nor an image")
        while not stop.is_set():
            for frame in frames * 2:
                await ws.send(frame)
            await asyncio.sleep(0.3)
        await ws.close()
        reader.cancel()
    return seen


def pictured_queries() -> list[str]:
    """The PromQL of the pictured panels, first target each, as the live run evaluates it."""
    name, titles = PICTURED
    panels = {p["title"]: p for p in dashboard_files()[name]["panels"]}
    return [substitute(panels[title]["targets"][0]["expr"]) for title in titles]


async def picture_dashboard(prom: str, path: Path) -> None:
    """A screenshot of Prometheus's graph page (the classic UI Debian ships) showing the pictured panels'
    queries over the live run: real data from real processes, for docs/img/dashboard.jpg."""
    from urllib.parse import urlencode

    from playwright.async_api import async_playwright

    params: dict[str, str] = {}
    for i, expr in enumerate(pictured_queries()):
        params.update({f"g{i}.expr": expr, f"g{i}.tab": "0", f"g{i}.range_input": PICTURED_RANGE,
                       f"g{i}.stacked": "0"})
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{prom}/classic/graph?{urlencode(params)}")
            # Laid out as a dashboard is: two panels a row, the menu bar out of the way of a full-page shot.
            await page.add_style_tag(content="#graph_container { display: grid; grid-template-columns: 1fr 1fr;"
                                              " gap: 0 1rem } .navbar { position: static }"
                                              " #add_graph, #graph_container > .clearfix { display: none }")
            # Each panel draws its chart (an SVG path per series) once its query answered with data.
            await page.wait_for_function(
                "n => document.querySelectorAll('.graph_area svg path').length >= n",
                arg=len(params) // 4, timeout=60_000)
            errors = await page.locator(".alert-danger:visible").all_inner_texts()
            assert not [e for e in errors if e.strip()], errors
            await page.screenshot(path=str(path), full_page=True)
        finally:
            await browser.close()


async def query(client: httpx.AsyncClient, prom: str, expr: str) -> list[dict[str, Any]]:
    response = await client.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body.get("status") == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.mark.slow
async def test_every_expression_returns_data_from_a_live_fleet(live_stack: LiveStack,
                                                              hand_photos: list[tuple[Path, int]]) -> None:
    stack = live_stack
    photos = [p for p, fingers in hand_photos if fingers > 0][:4]
    hub, prom = f"http://127.0.0.1:{stack.hub_port}", f"http://127.0.0.1:{stack.prom_port}"
    stop = asyncio.Event()
    async with httpx.AsyncClient() as client:
        # Traffic starts once Prometheus has scraped every target, so rates see it grow.
        deadline = time.monotonic() + 60
        while len(await query(client, prom, "up == 1")) < 3:
            assert time.monotonic() < deadline, "Prometheus did not scrape the three targets"
            await asyncio.sleep(0.5)
        streamer = asyncio.create_task(
            stream_frames(f"ws://127.0.0.1:{stack.edge_port}/ws", stack.key, photos, stop))
        rest = asyncio.create_task(rest_traffic(client, hub, photos, stop))

        # Poll every expression until it has data (the rules need a few evaluations of rates over
        # several scrapes, and the hub hears from the edge every 0.5 s); generous for a loaded machine.
        pending = {where: expr for where, expr in live_expressions()}
        deadline = time.monotonic() + 90
        while pending and time.monotonic() < deadline:
            for where, expr in list(pending.items()):
                # Data means a real number: NaN (e.g. a quantile of no observations) does not count.
                if any(r["value"][1] not in ("NaN", "+Inf", "-Inf") for r in await query(client, prom, expr)):
                    del pending[where]
            if pending:
                await asyncio.sleep(1)
        if not pending:  # every panel has data: draw the pictured ones while the traffic still flows
            span = f'count_over_time(hgr_fleet_edge_fps{{edge_id="{LIVE_EDGE}"}}[{PICTURED_RANGE}])'
            while time.monotonic() < deadline + 60:
                if any(float(r["value"][1]) >= PICTURED_SAMPLES for r in await query(client, prom, span)):
                    break
                await asyncio.sleep(1)
            ARTIFACTS.mkdir(exist_ok=True)
            await picture_dashboard(prom, ARTIFACTS / "dashboard.png")
        stop.set()
        seen = await asyncio.wait_for(streamer, 60)
        statuses = await asyncio.wait_for(rest, 60)

        targets = (await client.get(f"{prom}/api/v1/targets")).json()["data"]["activeTargets"]
        edge_ids = (await client.get(f"{prom}/api/v1/label/edge_id/values")).json()["data"]
    assert seen["results"] > 0 and seen["errors"] > 0 and seen["closed_with"] == 1003, seen
    assert statuses.get(200, 0) >= 3 and statuses.get(429, 0) >= 1 and statuses.get(404) == 1, statuses
    assert any(400 <= s < 500 and s not in (404, 429) for s in statuses), statuses
    assert sorted((t["labels"]["job"], t["health"]) for t in targets) == [
        ("hgr-edge", "up"), ("hgr-edge", "up"), ("hgr-hub", "up")], targets
    # The edge dashboard's variable (label_values(edge_id)) lists the edges.
    assert {LIVE_EDGE, "edge-cut"} <= set(edge_ids), edge_ids
    assert not pending, "expressions without data:\n" + "\n".join(f"  {w}: {e}" for w, e in pending.items())
