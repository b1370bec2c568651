"""Each model alone, its candidates timed round-robin with fp32 in one process."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np


def time_models(runners: dict[str, Any], inputs: Sequence[np.ndarray], seconds: float) -> dict[str, Any]:
    """ms per invoke, round-robin over ``runners`` (fp32 among them), the starting runner rotating each round."""
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    for n in names:  # warm-up
        runners[n].set_tensor(int(runners[n].get_input_details()[0]["index"]), inputs[0])
        runners[n].invoke()
    deadline = time.monotonic() + seconds
    rounds = 0
    while rounds < 3 or (time.monotonic() < deadline and rounds < 10_000):
        x = inputs[rounds % len(inputs)]
        for k in range(len(names)):
            name = names[(rounds + k) % len(names)]
            it = runners[name]
            it.set_tensor(int(it.get_input_details()[0]["index"]), x)
            start = time.perf_counter()
            it.invoke()
            times[name].append((time.perf_counter() - start) * 1000)
        rounds += 1

    def pct(values: list[float], q: float) -> float:
        s = sorted(values)
        return s[min(len(s) - 1, int(q * len(s)))]

    base = times["fp32"]
    return {n: {"calls": len(v), "p10_ms": round(pct(v, 0.1), 3), "p50_ms": round(pct(v, 0.5), 3),
                "speed_p50": round(pct(base, 0.5) / pct(v, 0.5), 3),
                "speed_p10": round(pct(base, 0.1) / pct(v, 0.1), 3)} for n, v in times.items()}
