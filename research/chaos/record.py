"""What a chaos run records: good clients' records, hostile answers, faults and samples."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

GRACE_S = 2.0  # a fault's effect is counted until its part is back, plus this


@dataclass
class Record:
    t0: float  # seconds since the run started
    t1: float
    ok: int  # images answered with a result
    failed: int  # images answered with an error, or lost with the connection
    latencies_ms: list[float]
    outcome: str


@dataclass
class Fault:
    name: str
    at_s: float
    recovered_s: float | None = None
    detail: str = ""

    def covers(self, t0: float, t1: float) -> bool:
        end = (self.recovered_s if self.recovered_s is not None else float("inf")) + GRACE_S
        return t0 <= end and t1 >= self.at_s


@dataclass
class Run:
    start: float = field(default_factory=time.monotonic)
    good: dict[str, list[Record]] = field(default_factory=lambda: {"rest": [], "ws": []})
    hostile: list[tuple[float, str, str]] = field(default_factory=list)  # (t, kind, outcome)
    faults: list[Fault] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    restarts: Counter[str] = field(default_factory=Counter)  # worker restarts seen, by service
    restarts_by_pid: dict[tuple[str, int], int] = field(default_factory=dict)

    def now(self) -> float:
        return time.monotonic() - self.start
