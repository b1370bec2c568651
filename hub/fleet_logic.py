"""The hub's fleet logic as pure functions: reading edge messages, batching, sequence tracking, quotas,
and the REST views. No I/O and no clock (``now`` is passed in), so every rule is unit-tested directly;
``hub.fleet_store`` persists the results (Redis, whose Lua mirrors ``apply_seqs``, or memory).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from hgr.common.contracts import MAX_THROTTLE_FPS, MAX_THROTTLE_S, ThrottleCommand
from hgr.common.messaging.topics import PayloadError, as_counts, as_float, as_int, as_str

MAX_SEQ = 2**53  # JSON-safe integers


# --- reading messages (every field checked: a hub survives any payload) ---

@dataclass(frozen=True, slots=True)
class StatusMsg:
    online: bool
    session: str
    reason: str
    birth_seq: int = 0
    metrics_seq: int = 0
    version: str = ""
    model: str = ""
    capabilities: str = "{}"  # JSON text, stored as is
    metrics_interval_s: float = 0.0
    conn: int = 0  # the edge's connection number: orders a Will against the births of the same session


def parse_status(doc: dict[str, Any]) -> StatusMsg:
    status = as_str(doc, "status", max_len=16)
    session = as_str(doc, "session", max_len=64)
    if status == "online":
        caps = doc.get("capabilities") or {}
        if not isinstance(caps, dict):
            raise PayloadError("capabilities: expected an object")
        caps_text = json.dumps(caps, separators=(",", ":"))
        if len(caps_text) > 4096:
            raise PayloadError("capabilities: too large")
        return StatusMsg(True, session, "birth", as_int(doc, "birth_seq", lo=1, hi=MAX_SEQ),
                         as_int(doc, "metrics_seq", 0, hi=MAX_SEQ), as_str(doc, "version", "", max_len=64),
                         as_str(doc, "model", "", max_len=64), caps_text,
                         as_float(doc, "metrics_interval_s", 0.0, hi=86_400), as_int(doc, "conn", 0, hi=MAX_SEQ))
    if status == "offline":
        return StatusMsg(False, session, as_str(doc, "reason", "offline", max_len=32),
                         conn=as_int(doc, "conn", 0, hi=MAX_SEQ))
    raise PayloadError(f"status: expected online or offline, got {status!r}")


@dataclass(frozen=True, slots=True)
class MetricsMsg:
    session: str
    seq: int
    doc: dict[str, Any]  # the whole message; only the newest of a batch becomes the snapshot
    frames_by_key: dict[str, int]


def parse_metrics(doc: dict[str, Any]) -> MetricsMsg:
    """What every message needs checked on arrival (the hot path at 10k+/s): identity, sequence and
    the per-key frame counts. The rest is checked by ``metrics_snapshot`` for the message kept."""
    return MetricsMsg(as_str(doc, "session", max_len=64), as_int(doc, "seq", lo=1, hi=MAX_SEQ), doc,
                      as_counts(doc, "frames_by_key"))


def metrics_snapshot(doc: dict[str, Any]) -> dict[str, Any]:
    """What the REST view shows of a metrics message, every number validated."""
    latency = doc.get("latency_ms") or {}
    frames = doc.get("frames") or {}
    workers = doc.get("workers") or {}
    if not isinstance(latency, dict) or not isinstance(frames, dict) or not isinstance(workers, dict):
        raise PayloadError("latency_ms, frames and workers must be objects")
    outbox = doc.get("outbox") or {}
    if not isinstance(outbox, dict):
        raise PayloadError("outbox must be an object")
    workers_text = json.dumps(workers, separators=(",", ":"))
    if len(workers_text) > 16384:
        raise PayloadError("workers: too large")
    snapshot = {
        "fps": as_float(doc, "fps", 0.0, hi=1e6),
        "latency_ms": {p: as_float(latency, p, 0.0, hi=1e7) for p in ("p50", "p95", "p99")},
        "frames": {k: as_int(frames, k, 0) for k in ("received", "processed", "dropped")},
        "drops": as_counts(doc, "drops"),
        "errors": as_counts(doc, "errors"),
        "connections": as_int(doc, "connections", 0, hi=10_000_000),
        "workers": workers,
        "outbox": {k: as_int(outbox, k, 0) for k in ("queued", "dropped")},
        "ts": as_float(doc, "ts", 0.0, hi=1e11),
    }
    return snapshot


def parse_event(doc: dict[str, Any]) -> dict[str, Any]:
    phase = as_str(doc, "phase", max_len=16)
    if phase not in ("new", "update", "end"):
        raise PayloadError(f"phase: expected new, update or end, got {phase!r}")
    return {"phase": phase, "stream": as_str(doc, "stream", max_len=128),
            "total_fingers": as_int(doc, "total_fingers", 0, hi=1000), "ts": as_float(doc, "ts", 0.0, hi=1e11)}


# --- batching between store flushes ---

@dataclass
class EdgeBatch:
    """What one hub received from one edge since its last flush (aggregated in memory)."""

    session: str = ""
    seqs: list[int] = field(default_factory=list)
    by_seq_keys: dict[int, dict[str, int]] = field(default_factory=dict)  # seq -> frames_by_key
    snap_seq: int = 0
    snapshot_doc: dict[str, Any] | None = None  # the newest message, validated at flush time
    snapshot: dict[str, Any] | None = None
    events: int = 0
    last_event: dict[str, Any] | None = None

    def add_metrics(self, msg: MetricsMsg) -> None:
        if msg.session != self.session and self.seqs:
            # A new session inside one batch (edge restarted): keep the newest session only; the
            # store resets its tracking on a session change anyway.
            self.seqs.clear()
            self.by_seq_keys.clear()
            self.snap_seq, self.snapshot_doc = 0, None
        self.session = msg.session
        self.seqs.append(msg.seq)
        if msg.frames_by_key:
            self.by_seq_keys[msg.seq] = msg.frames_by_key
        if msg.seq > self.snap_seq:
            self.snap_seq, self.snapshot_doc = msg.seq, msg.doc

    def prepare(self) -> bool:
        """Validate the kept message into ``snapshot``; False when it was invalid (no snapshot then)."""
        if self.snapshot_doc is None:
            return True
        try:
            self.snapshot = metrics_snapshot(self.snapshot_doc)
            return True
        except PayloadError:
            self.snapshot = None
            return False
        finally:
            self.snapshot_doc = None

    def add_event(self, event: dict[str, Any]) -> None:
        self.events += 1
        self.last_event = event

    def key_frames(self, accepted: list[int]) -> dict[str, int]:
        """Frames per key name over the accepted (non-duplicate) messages."""
        out: dict[str, int] = {}
        for seq in accepted:
            for key, n in self.by_seq_keys.get(seq, {}).items():
                out[key] = out.get(key, 0) + n
        return out


# --- sequence tracking (mirrored by fleet_ingest.lua; tests run both stores through the same cases) ---

@dataclass
class SeqState:
    """``lo``: every seq ≤ lo is accounted for (received or declared lost); ``pending``: received seqs
    above ``lo``; ``hole_at``: when the current hole above ``lo`` was noticed (0: none)."""

    session: str = ""
    lo: int | None = None
    hi: int = 0
    pending: set[int] = field(default_factory=set)
    hole_at: float = 0.0


@dataclass(frozen=True, slots=True)
class SeqOutcome:
    accepted: list[int]
    duplicates: int  # already seen (or arrived after its hole was declared lost)
    lost: int  # declared missing in this call
    reset: bool  # a new session started the tracking over


def apply_seqs(state: SeqState, session: str, seqs: list[int], now: float, grace_s: float) -> SeqOutcome:
    """Account ``seqs`` of ``session`` (mutates ``state``).

    With a shared subscription one edge's messages are split across hubs and flushed out of order, so
    a missing seq is only *lost* once the hole has stayed open ``grace_s`` without the watermark moving.
    Each declaration skips to the next received seq only: newer seqs may still be in another hub's
    batch and must not be mistaken for duplicates.
    """
    reset = False
    if not seqs:
        return SeqOutcome([], 0, 0, False)
    if state.session != session or state.lo is None:
        # First message of this session seen before its birth: start just below the lowest seq.
        reset = True
        state.session, state.lo, state.pending, state.hole_at = session, min(seqs) - 1, set(), 0.0
        state.hi = state.lo
    accepted: list[int] = []
    duplicates = 0
    for seq in sorted(seqs):  # as the Lua does
        if seq <= state.lo or seq in state.pending:
            duplicates += 1
        else:
            state.pending.add(seq)
            accepted.append(seq)
            state.hi = max(state.hi, seq)
    advanced = _advance(state)
    lost = 0
    if state.lo >= state.hi:
        state.hole_at = 0.0
    elif state.hole_at == 0.0 or advanced:
        state.hole_at = now
    elif now - state.hole_at >= grace_s:
        nxt = min(state.pending)
        lost = nxt - state.lo - 1
        state.lo = nxt - 1
        _advance(state)
        state.hole_at = now if state.lo < state.hi else 0.0
    return SeqOutcome(accepted, duplicates, lost, reset)


def _advance(state: SeqState) -> bool:
    assert state.lo is not None
    moved = False
    while state.lo + 1 in state.pending:
        state.pending.discard(state.lo + 1)
        state.lo += 1
        moved = True
    return moved


# --- an edge's word is a claim: its per-key frame counts, bounded (docs/security.md) ---

@dataclass
class EdgeAllowance:
    """What one hub still believes of one edge's frame counts: a budget that refills at the edge's
    physical ceiling (frames per second) up to ``burst_s`` seconds of it, and the key names it has named in
    the current quota window."""

    budget: float
    at: float
    window: int = -1
    names: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Credible:
    frames: dict[str, int]  # what the hub counts
    clamped_frames: int  # frames claimed beyond what the edge could have processed
    dropped_names: int  # key names over the per-edge cap in this window


def credible_key_frames(allowance: EdgeAllowance | None, claimed: dict[str, int], now: float, window: int,
                        ceiling_fps: float, burst_s: float, max_names: int) -> tuple[EdgeAllowance, Credible]:
    """``claimed`` (frames per key name from one edge's accepted messages since the last flush) cut down to
    what that edge can have done: at most ``max_names`` names per quota window (new names past it are
    dropped), and in all no more frames than ``ceiling_fps`` × the seconds since the budget was last drawn
    (up to ``burst_s`` seconds' worth, which a fresh edge starts with); an excess scales every key down
    alike. Returns the allowance to keep and what to count."""
    capacity = ceiling_fps * burst_s
    if allowance is None:
        allowance = EdgeAllowance(budget=capacity, at=now)
    if allowance.window != window:
        allowance.window, allowance.names = window, set()
    allowance.budget = min(capacity, allowance.budget + max(0.0, now - allowance.at) * ceiling_fps)
    allowance.at = now
    kept: dict[str, int] = {}
    dropped = 0
    for name in sorted(claimed):  # deterministic: the same names survive whichever hub counts them
        if name not in allowance.names:
            if len(allowance.names) >= max_names:
                dropped += 1
                continue
            allowance.names.add(name)
        kept[name] = claimed[name]
    total = sum(kept.values())
    clamped = 0
    if total > allowance.budget:
        factor = allowance.budget / total
        scaled = {name: math.floor(n * factor) for name, n in kept.items()}
        clamped = total - sum(scaled.values())
        kept = scaled
    allowance.budget -= sum(kept.values())
    return allowance, Credible({k: n for k, n in kept.items() if n > 0}, clamped, dropped)


# --- fleet-wide quota (per key name, fixed windows) ---

def quota_window(now: float, window_s: float) -> tuple[int, float]:
    """(window index, when it ends) of the fixed window holding ``now``."""
    index = math.floor(now / window_s)
    return index, (index + 1) * window_s


def over_quota(used: int, quota: int) -> bool:
    """0 = no fleet quota."""
    return quota > 0 and used > quota


def throttle_command(key_name: str, window_end: float, now: float) -> ThrottleCommand:
    """Stop the key's frames on an edge until the window ends (the edge lifts it itself then)."""
    return {"cmd": "throttle", "key": key_name, "max_fps": 0, "duration_s": round(max(0.0, window_end - now), 3),
            "reason": "fleet_quota"}


def stream_throttle_command(stream_id: str, max_fps: float | None, duration_s: float | None = None,
                            reason: str = "operator") -> ThrottleCommand:
    """Cap one stream of an edge (its id from the edge's events) at ``max_fps`` (0 stops it; None lifts
    the cap); with ``duration_s`` the edge lifts it itself then. Same fields as a key's throttle."""
    if not stream_id or len(stream_id) > 64:
        raise ValueError("stream id: 1-64 characters")
    if max_fps is not None and not 0 <= max_fps <= MAX_THROTTLE_FPS:
        raise ValueError(f"max_fps: a number in [0, {MAX_THROTTLE_FPS}] or None")
    command: ThrottleCommand = {"cmd": "throttle", "stream": stream_id, "max_fps": max_fps, "reason": reason}
    if max_fps is not None and duration_s is not None:
        if not 0 < duration_s <= MAX_THROTTLE_S:
            raise ValueError(f"duration_s: in (0, {MAX_THROTTLE_S}]")
        command["duration_s"] = round(duration_s, 3)
    return command


# --- views ---

def _f(raw: dict[str, str], key: str, default: float = 0.0) -> float:
    try:
        return float(raw.get(key, default))
    except (TypeError, ValueError):
        return default


def _json(raw: dict[str, str], key: str, default: Any) -> Any:
    try:
        return json.loads(raw[key]) if raw.get(key) else default
    except ValueError:
        return default


def edge_view(edge_id: str, raw: dict[str, str], now: float) -> dict[str, Any]:
    """One edge as ``GET /fleet`` shows it, from its stored hash (string fields)."""
    snap = _json(raw, "snapshot", {})
    last_seen = _f(raw, "last_seen")
    return {
        "edge_id": edge_id,
        "status": raw.get("status", "unknown"),
        "reason": raw.get("reason", ""),
        "last_seen": last_seen or None,
        "last_seen_age_s": round(now - last_seen, 3) if last_seen else None,
        "online_since": _f(raw, "online_since") or None,
        "version": raw.get("version", ""),
        "model": raw.get("model", ""),
        "session": raw.get("session", ""),
        "birth_seq": int(_f(raw, "birth_seq")),
        "capabilities": _json(raw, "capabilities", {}),
        "fps": snap.get("fps", 0.0),
        "latency_ms": snap.get("latency_ms", {"p50": 0.0, "p95": 0.0, "p99": 0.0}),
        "drops": (snap.get("frames") or {}).get("dropped", 0),
        "drops_by_reason": snap.get("drops", {}),
        "connections": snap.get("connections", 0),
        "frames": snap.get("frames", {"received": 0, "processed": 0, "dropped": 0}),
        "workers": snap.get("workers", {}),
        "errors": snap.get("errors", {}),
        "outbox": snap.get("outbox", {"queued": 0, "dropped": 0}),
        "metrics_seq": int(_f(raw, "snap_seq")),
        "messages": {"metrics": int(_f(raw, "msgs")), "events": int(_f(raw, "events")),
                     "duplicates": int(_f(raw, "dups")), "gaps": int(_f(raw, "gaps"))},
        "last_event": _json(raw, "last_event", None),
    }


def fleet_totals(edges: list[dict[str, Any]]) -> dict[str, Any]:
    online = [e for e in edges if e["status"] == "online"]
    return {
        "edges": len(edges),
        "online": len(online),
        "offline": len(edges) - len(online),
        "fps": round(sum(e["fps"] for e in online), 2),
        "connections": sum(e["connections"] for e in online),
        "drops": sum(e["drops"] for e in edges),
        "frames_processed": sum(e["frames"].get("processed", 0) for e in edges),
        "gaps": sum(e["messages"]["gaps"] for e in edges),
        "max_latency_p95_ms": max((e["latency_ms"].get("p95", 0.0) for e in online), default=0.0),
    }
