"""research/mqtt_fleet.py: how the hub's ingest rate is read from its samples, and one small real run of
each mode (private Mosquitto with the shipped config, the machine's Redis, real hub and publishers)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from research.mqtt_fleet import ingest_rate
from tests.support import ROOT, need


def test_live_rate_is_the_steady_part() -> None:
    # 0 → 1000 at 100/s after a slow start and before a slow tail: only the 10–90 % window counts
    series = [(0.0, 0), (1.0, 50), *((1.0 + i, 50 + 100 * i) for i in range(1, 10)), (20.0, 1000)]
    assert ingest_rate(series, None) == pytest.approx(100.0)


def test_backlog_rate_is_the_whole_queue_from_the_hub_s_return() -> None:
    # the hub came back at t=10 and stored the whole queue between two samples: there is no steady
    # window, but the queue over the time to the first sample that saw it all is a rate
    series = [(13.5, 0), (13.75, 6000), (14.0, 6000)]
    assert ingest_rate(series, 10.0) == pytest.approx(6000 / 3.75)


def test_a_live_run_stored_between_two_samples_is_a_lower_bound_not_zero() -> None:
    # a loaded machine: no sample inside the 10-90 % window; the rate is what crossed it between the
    # last sample below and the first above
    series = [(0.0, 0), (13.5, 0), (13.75, 6000), (14.0, 6000)]
    assert ingest_rate(series, None) == pytest.approx(6000 / 0.25)
    assert ingest_rate([(1.0, 6000)], None) == 0.0


def test_backlog_rate_without_data_is_zero() -> None:
    assert ingest_rate([], 10.0) == 0.0
    assert ingest_rate([(11.0, 0)], 10.0) == 0.0


@pytest.mark.parametrize("mode", ["live", "backlog"])
def test_a_small_run_stores_every_message_and_reports_a_rate(mode: str, redis_url: str) -> None:
    need(bool(shutil.which("mosquitto")), "mosquitto is not installed")
    proc = subprocess.run([sys.executable, "-m", "research.mqtt_fleet", "--edges", "20", "--rate", "2000",
                           "--duration", "2", "--mode", mode, "--redis-url", redis_url],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["mode"] == mode and report["sent"] > 0
    assert report["lost"] == 0 and report["hub"]["gaps"] == 0 and report["hub"]["stored"] == report["sent"]
    assert report["hub_ingest_rate"] > 0, report
