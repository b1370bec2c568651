"""The short chaos run (research/chaos/, 50 s): real hub and edge, private Redis and Mosquitto, good and
hostile traffic while a worker is killed, Redis restarted, the broker stopped and the hub reloaded. The run's
own verdict is asserted, property by property, so a failure says which one broke."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, need

pytestmark = pytest.mark.slow


def test_short_chaos_run_keeps_good_clients_whole(tmp_path: Path, model_path: str) -> None:
    for tool in ("redis-server", "mosquitto"):
        need(bool(shutil.which(tool)), f"{tool} is not installed")
    out = tmp_path / "chaos.json"
    proc = subprocess.run([sys.executable, "-m", "research.chaos", "--duration", "50", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert out.exists(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    verdict = report["verdict"]
    assert [f["name"] for f in report["faults"]] == ["kill_edge_worker", "restart_redis", "stop_broker",
                                                     "reload_hub", "kill_hub_worker"]
    assert all(f["recovered_s"] is not None for f in report["faults"])
    for kind in ("rest", "ws"):
        outside = report["good"][kind]["outside_faults"]
        assert outside["ok"] > 0 and outside["success_rate"] >= 0.99, (kind, outside)
    assert verdict["hostile_5xx_outside_faults"] == 0, report["hostile"]
    assert report["hostile"]["sent"] >= 40  # one crafted action per second
    assert report["worker_restarts"] == report["workers_killed"] == {"edge": 1, "hub": 1}
    assert verdict["edge_rss_growth_lt_50mb"], report["rss"]
    assert verdict["unready_samples_outside_faults"] == 0, report["unready_outside_faults"]
    assert verdict["passed"] and proc.returncode == 0
