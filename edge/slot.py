"""Flow control for one stream, pure and synchronous: the latest-frame-wins slot and a frame-rate gate.

A camera that sends faster than the model answers must not build a backlog: latency would grow
without bound and memory with it. So a connection holds at most one frame waiting for inference;
a newer frame replaces it, and the replaced frame is counted as dropped.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most one item; ``put`` replaces what was there and hands it back (the caller counts it)."""

    __slots__ = ("_item",)

    def __init__(self) -> None:
        self._item: T | None = None

    def put(self, item: T) -> T | None:
        """Store ``item``; return the item it replaced, if any."""
        old, self._item = self._item, item
        return old

    def take(self) -> T | None:
        item, self._item = self._item, None
        return item

    def __bool__(self) -> bool:
        return self._item is not None


class FpsGate:
    """Token bucket: ``rate`` frames per second on average, bursts of up to ``burst`` frames.

    The burst absorbs network jitter (frames of a steady 30 fps camera arrive in clumps) without
    letting a flooding client through at more than ``rate`` on average.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate / 4)
        self._tokens = self.burst
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        if self.rate <= 0:
            return False  # a throttle of 0 fps stops the stream's frames entirely
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
