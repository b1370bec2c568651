"""Per-stream finger/gesture change events, debounced: pure logic, no I/O, the clock passed in.

A stream yields a result per frame, but what a fleet wants to hear is "this stream now shows 3
fingers": an event when the hand state changes and *holds* for ``EVENT_DEBOUNCE_MS`` (a flicker of
one frame is not a change). Lifecycle per stream: ``new`` (first stable state), ``update`` (a
different stable state), ``end`` (the stream closed, after a ``new``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from hgr.common.contracts import DetectionResult, EventFields, ResultMessage

# (total fingers, ((handedness, fingers, gesture), ...)) — what an event reports and compares.
HandState = tuple[int, tuple[tuple[str, int, str], ...]]
Phase = Literal["new", "update"]


def hand_state(result: DetectionResult | ResultMessage) -> HandState:
    hands = tuple(sorted((str(h.get("handedness", "")), int(h.get("fingers", 0)), str(h.get("gesture", "")))
                         for h in result.get("hands") or ()))
    return int(result.get("total_fingers", sum(h[1] for h in hands))), hands


def state_fields(state: HandState) -> EventFields:
    total, hands = state
    return {"total_fingers": total,
            "hands": [{"handedness": h, "fingers": f, "gesture": g} for h, f, g in hands]}


@dataclass
class StreamDebouncer:
    debounce_s: float
    published: HandState | None = None
    candidate: HandState | None = None
    candidate_since: float = 0.0
    started_at: float | None = None

    def observe(self, state: HandState, now: float) -> Phase | None:
        """The event phase to publish for this frame's ``state`` (``new``/``update``), or None."""
        if state != self.candidate:
            self.candidate, self.candidate_since = state, now
        if self.candidate != self.published and now - self.candidate_since >= self.debounce_s:
            self.published = self.candidate
            if self.started_at is None:
                self.started_at = now
                return "new"
            return "update"
        return None


@dataclass
class EventTracker:
    """Debouncers of the open streams, bounded (oldest forgotten first) so a leak cannot grow it."""

    debounce_s: float
    max_streams: int = 4096
    streams: OrderedDict[str, StreamDebouncer] = field(default_factory=OrderedDict)

    def observe(self, stream_id: str, result: DetectionResult | ResultMessage,
                now: float) -> tuple[Phase, HandState] | None:
        debouncer = self.streams.get(stream_id)
        if debouncer is None:
            debouncer = self.streams[stream_id] = StreamDebouncer(self.debounce_s)
            while len(self.streams) > self.max_streams:
                self.streams.popitem(last=False)
        phase = debouncer.observe(hand_state(result), now)
        return (phase, debouncer.published) if phase and debouncer.published is not None else None

    def end(self, stream_id: str, now: float) -> tuple[HandState, float] | None:
        """(last published state, seconds since ``new``) when the closed stream had published, else None."""
        debouncer = self.streams.pop(stream_id, None)
        if debouncer is None or debouncer.published is None or debouncer.started_at is None:
            return None
        return debouncer.published, now - debouncer.started_at
