"""research/abuse.py: the report's arithmetic (no service), and one small real run of rows 6 and 7 with tiny
windows: the report's shape, a legitimate stream answered in every window, every number finite. The rates
and ratios are the benchmark's to measure (docs/benchmarks.md "Cheap attacks against a legitimate stream"),
never asserted here."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from research.abuse import finite, summarise, table
from tests.support import ROOT, need

PHASES = ["alone", "attack", "alone_again"]


def _window(phase: str, rate: float, rss: tuple[float, float, float]) -> dict[str, Any]:
    return {"phase": phase, "legit": {"results_per_s": rate},
            "health_ms": {"edge": {"p50": 2.0, "p99": 9.0, "max": 12.0, "probes": 40, "failed": 0}},
            "rss_mb": {"edge": {"first": rss[0], "max": rss[1], "last": rss[2]}},
            "attack": {"connections": 3, "outcomes": {"close 1008": 3}} if phase == "attack" else None}


def test_the_ratio_is_the_attacked_window_against_both_alone_windows() -> None:
    windows = [_window("alone", 12.0, (40, 41, 41)), _window("attack", 9.0, (41, 60, 55)),
               _window("alone_again", 6.0, (55, 58, 50))]
    s = summarise("edge", windows)
    assert s["legit_results_per_s"] == [12.0, 9.0, 6.0]
    assert s["legit_ratio"] == 1.0 and s["alone_drift"] == 0.5  # 9 / mean(12, 6); the drift shows apart
    assert s["rss_mb"] == {"before": 41, "peak": 60, "after": 50}
    assert list(s["health_ms"]) == PHASES


def test_no_rate_alone_gives_no_ratio_rather_than_a_division_by_zero() -> None:
    s = summarise("edge", [_window("alone", 0.0, (1, 1, 1)), _window("attack", 0.0, (1, 1, 1)),
                           _window("alone_again", 0.0, (1, 1, 1))])
    assert s["legit_ratio"] is None and s["alone_drift"] is None


def test_finite_looks_into_every_nested_number() -> None:
    assert finite({"a": [1, 2.5, None, "x", {"b": True}]})
    assert not finite({"a": [1, {"b": math.nan}]})
    assert not finite([math.inf])


def test_the_table_has_a_line_per_row_with_the_attack_s_outcome() -> None:
    windows = [_window("alone", 12.0, (40, 41, 41)), _window("attack", 9.0, (41, 60, 55)),
               _window("alone_again", 6.0, (55, 58, 50))]
    text = table({"rows": [{"row": "7", "attacked": "edge", "windows": windows,
                            "summary": summarise("edge", windows)}]})
    lines = text.splitlines()
    assert len(lines) == 3 and lines[2].startswith("| 7 (edge) | 12 / 9 / 6 | 1.0 | 2.0 / 9.0 / 12.0 | 41 / 60 / 50 |")
    assert "close 1008 ×3" in lines[2]


@pytest.mark.service
def test_a_small_run_measures_each_window(tmp_path: Path, model_path: str) -> None:
    for tool in ("redis-server", "mosquitto"):
        need(bool(shutil.which(tool)), f"{tool} is not installed")
    out = tmp_path / "abuse.json"
    proc = subprocess.run([sys.executable, "-m", "research.abuse", "--rows", "6,7", "--window", "2", "--out", str(out)],
                          cwd=ROOT, env={**os.environ, "HGR_MODEL_PATH": model_path}, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report == json.loads(proc.stdout)
    assert finite(report), report
    assert [(r["row"], r["attacked"]) for r in report["rows"]] == [("6", "hub"), ("7", "edge")]
    for row in report["rows"]:
        assert [w["phase"] for w in row["windows"]] == PHASES
        for w in row["windows"]:
            assert w["legit"]["results"] > 0, (row["row"], w)  # the legitimate stream was answered
            for name, health in w["health_ms"].items():
                assert health["probes"] > 0 and health["p99"] is not None, (row["row"], name, w["phase"])
            assert w["rss_mb"][row["attacked"]]["max"] > 0
            assert (w["attack"] is not None) == (w["phase"] == "attack")
        attack = row["windows"][1]["attack"]
        assert "error" not in attack, attack
        assert set(row["summary"]) >= {"legit_results_per_s", "legit_ratio", "health_ms", "rss_mb"}
        assert f"| {row['row']} ({row['attacked']}) |" in proc.stderr
    row6, row7 = report["rows"]
    assert row6["windows"][1]["attack"]["fake_edges"] > 0
    for w in row6["windows"]:  # the real edge's messages, as the hub accounted for them
        fleet = w["fleet"]
        assert all(isinstance(fleet[k], int) and fleet[k] >= 0 for k in ("edge_metrics_sent", "stored", "lost", "gaps"))
        assert len(fleet["hub_metrics_bytes"]) == 2
    assert row6["summary"]["hub_metrics_bytes"][1] > 0
    assert row7["windows"][1]["attack"]["connections"] >= 1 and row7["windows"][1]["attack"]["frames_sent"] > 0
