"""GCRA (generic cell rate algorithm) arithmetic: the one rate-limit rule, as a pure function.

A bucket is a single number, its *theoretical arrival time* (TAT): when it would be empty again if
no more requests came. Each accepted image pushes TAT forward by one emission interval
``T = window / requests``; a request is accepted while TAT, after the push, stays within
``capacity × T`` of now. So a fresh key may spend ``capacity = requests + burst`` at once, then
``requests`` per ``window`` at a steady pace; over any span ``d`` no key gets more than
``capacity + d / T``.

Everything is integer microseconds so the Redis Lua script (``ratelimit.lua``) computes exactly the
same numbers from the same inputs: both run IEEE doubles on integers far below 2**53. The script
mirrors ``gcra()`` line for line; ``tests/test_gcra.py`` checks that they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

US = 1_000_000


@dataclass(frozen=True, slots=True)
class Policy:
    requests: int  # per window
    window_s: float
    burst: int = 0

    @property
    def interval_us(self) -> int:
        """Emission interval T in whole microseconds (≥ 1); rounding moves the rate by < 1 ppm."""
        return max(1, round(self.window_s * US / self.requests))

    @property
    def capacity(self) -> int:
        return self.requests + self.burst


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    new_tat_us: int  # the bucket's TAT after this decision (unchanged when refused)
    remaining: int  # images still accepted right now
    retry_after_us: int  # 0 when allowed; else when this request would fit (-1: never, cost > capacity)
    reset_us: int  # until the bucket is full again


def gcra(tat_us: int | None, now_us: int, cost: int, interval_us: int, capacity: int) -> Decision:
    """Decide one request of ``cost`` images against a bucket whose stored TAT is ``tat_us``
    (None: never seen). The caller stores ``new_tat_us`` (with a TTL of ``reset_us``)."""
    tat = now_us if tat_us is None or tat_us < now_us else tat_us
    tau = capacity * interval_us
    new_tat = tat + cost * interval_us
    allow_at = new_tat - tau
    if cost > capacity:
        return Decision(False, tat, _floor_div(now_us + tau - tat, interval_us), -1, tat - now_us)
    if allow_at > now_us:
        return Decision(False, tat, _floor_div(now_us + tau - tat, interval_us), allow_at - now_us, tat - now_us)
    return Decision(True, new_tat, _floor_div(now_us + tau - new_tat, interval_us), 0, new_tat - now_us)


def _floor_div(a: int, b: int) -> int:
    # Written as floor(a / b) on doubles, not a // b, to be bit-for-bit what Lua's math.floor(a / b) does.
    return math.floor(a / b)
