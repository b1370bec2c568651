"""What the edge counts: one object feeds both ``EdgeNode.stats()`` (for the fleet reporter) and the
Prometheus metrics, so the two can never disagree."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

from hgr.common import metrics
from hgr.common.percentiles import percentiles

LATENCY_WINDOW = 2048  # recent frames the latency percentiles are computed over


class EdgeStats:
    def __init__(self) -> None:
        self.frames_received = 0
        self.frames_processed = 0
        self.frames_gated = 0  # answered by the motion gate, no model ran (STREAM_PIPELINE=litert)
        self.detector_runs = 0  # frames on which the palm detector ran (STREAM_PIPELINE=litert)
        self.dropped: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.by_key: Counter[str] = Counter()
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._received = {enc: metrics.FRAMES_RECEIVED.labels(enc) for enc in ("msgpack", "json", "image", "camera")}
        self._dropped: dict[str, Any] = {}

    def received(self, encoding: str) -> None:
        self.frames_received += 1
        self._received[encoding].inc()

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        child = self._dropped.get(reason)
        if child is None:
            child = self._dropped[reason] = metrics.FRAMES_DROPPED.labels(reason)
        child.inc()

    def error(self, code: str) -> None:
        self.errors[code] += 1
        metrics.ERRORS.labels("edge", code).inc()

    def processed(self, key_name: str | None, latency_s: float, result: Mapping[str, Any]) -> None:
        self.frames_processed += 1
        if key_name is not None:
            self.by_key[key_name] += 1
        self.latency_ms.append(latency_s * 1000)
        metrics.FRAMES_PROCESSED.inc()
        metrics.FRAME_LATENCY.observe(latency_s)
        timing = result["timing"]
        metrics.QUEUE_DELAY.observe(timing["queue_ms"] / 1000)
        if timing.get("gated"):
            self.frames_gated += 1
            metrics.FRAMES_GATED.inc()
        if timing.get("detector"):
            self.detector_runs += 1
            metrics.DETECTOR_RUNS.inc()
        for hand in result["hands"]:
            metrics.GESTURES.labels(hand["gesture"]).inc()

    def snapshot(self) -> dict[str, Any]:
        return {
            "frames_received": self.frames_received,
            "frames_processed": self.frames_processed,
            "frames_gated": self.frames_gated,
            "detector_runs": self.detector_runs,
            "frames_dropped": dict(self.dropped),
            "errors": dict(self.errors),
            "latency_ms": percentiles(list(self.latency_ms)),
            "frames_by_key": dict(self.by_key),
        }
