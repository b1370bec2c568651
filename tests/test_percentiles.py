"""common/percentiles.py: nearest-rank percentiles of latency samples."""

from __future__ import annotations

from hgr.common.percentiles import percentiles


def test_percentiles_nearest_rank() -> None:
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert percentiles([4.0]) == {"p50": 4.0, "p95": 4.0, "p99": 4.0}
