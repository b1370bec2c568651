"""Nearest-rank percentiles, for the edge's stats and the load generators' reports."""

from __future__ import annotations


def percentiles(values: list[float], points: tuple[int, ...] = (50, 95, 99)) -> dict[str, float | None]:
    """Nearest-rank percentiles; None for an empty window."""
    if not values:
        return {f"p{p}": None for p in points}
    ordered = sorted(values)
    n = len(ordered)
    return {f"p{p}": round(ordered[min(n - 1, max(0, -(-p * n // 100) - 1))], 3) for p in points}
