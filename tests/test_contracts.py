"""hgr.common.contracts against what the code really sends, what the docs show and what the Lua scripts store.

mypy checks that the code builds these shapes; here the declarations themselves (msgspec, strict: an int is
no str, a bool no int, every bound holds) check the values: the messages the protocol functions, the reporter
and the fleet commands produce, a real detection from the model, and every JSON example in docs/protocol.md
and docs/mqtt.md. msgspec ignores unknown keys (as every reader does), so the keys are compared besides.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hgr.common import contracts as c
from hgr.common.config import load_settings
from hgr.common.inference.pool import InferencePool
from hgr.common.messaging.bus import LocalBus
from hgr.common.messaging.topics import decode
from hgr.common.options import DetectOptions
from hgr.edge import protocol
from hgr.edge.reporter import EdgeReporter
from hgr.hub.fleet_logic import metrics_snapshot, stream_throttle_command, throttle_command
from hgr.hub.fleet_store import STATUS_ARGS
from tests.fleet_helpers import StandInNode
from tests.support import eventually

DOCS = Path(__file__).resolve().parent.parent / "docs"
HUB = Path(__file__).resolve().parent.parent / "hub"


def conform(value: Any, tp: Any) -> None:
    """``value`` fits the declaration ``tp`` (msgspec, strict) and has no key ``tp`` does not declare."""
    try:
        msgspec.convert(value, tp, strict=True)
    except msgspec.ValidationError as exc:
        raise AssertionError(f"not a {tp.__name__}: {exc}") from None
    unexpected = set(value) - set(tp.__annotations__)
    assert not unexpected, f"not a {tp.__name__}: unexpected {sorted(unexpected)}"


def test_conform_catches_missing_unexpected_mistyped_and_out_of_bounds_fields() -> None:
    good: c.ErrorMessage = {"type": "error", "code": "bad_frame", "message": "no"}
    conform(good, c.ErrorMessage)
    conform({**good, "seq": 3}, c.ErrorMessage)
    offline = {"v": 1, "edge_id": "e", "session": "s", "status": "offline", "reason": "will", "conn": 1}
    conform(offline, c.StatusOffline)  # ts is NotRequired, and read as such at run time
    for bad, tp in (({"type": "error", "code": "x"}, c.ErrorMessage), ({**good, "extra": 1}, c.ErrorMessage),
                    ({**good, "seq": "3"}, c.ErrorMessage), ({**good, "type": "result"}, c.ErrorMessage),
                    ({**offline, "ts": True}, c.StatusOffline), ({**offline, "conn": -1}, c.StatusOffline),
                    ({**offline, "session": "s" * 65}, c.StatusOffline)):
        with pytest.raises(AssertionError):
            conform(bad, tp)


# --- what the code sends ---

def _detection() -> c.DetectionResult:
    hand: c.HandResult = {
        "handedness": "Right", "score": 0.9, "landmarks": [[0.5, 0.5, 0.0]] * 21, "world_landmarks": None,
        "bbox": [0.1, 0.2, 0.6, 0.9], "fingers_up": dict.fromkeys(("thumb", "index", "middle", "ring", "pinky"), True),
        "fingers": 5, "gesture": "open"}
    return {"hands": [hand], "total_fingers": 5, "image_size": [640, 480],
            "timing": {"queue_ms": 0.1, "decode_ms": 1.0, "infer_ms": 5.0, "total_ms": 6.5}}


def test_protocol_messages_conform() -> None:
    detection = _detection()
    conform(detection, c.DetectionResult)
    conform(protocol.hello(edge_id="e1", encoding=protocol.MSGPACK, version="1.0.0",
                           limits={"max_frame_bytes": 1, "max_fps": 30.0, "idle_timeout_s": 60.0, "max_connections": 4},
                           models=["full"], defaults={"num_hands": 2, "mirrored": False, "model": "full"}),
            c.HelloMessage)
    for ts in (None, 17, 1.5):
        conform(protocol.result(3, ts, detection, dropped=2), c.ResultMessage)
    conform(protocol.error("bad_frame", "no"), c.ErrorMessage)
    conform(protocol.error("bad_frame", "no", 4), c.ErrorMessage)
    for encoding in protocol.ENCODINGS:  # bytes travel base64 in JSON: decoded with the declaration itself
        frame = protocol.encode_frame(5, b"\xff\xd8\xff", ts=1.0, opts={"num_hands": 1}, encoding=encoding)
        decoded = (msgspec.json.decode(frame, type=c.FrameMessage) if isinstance(frame, str)
                   else msgspec.msgpack.decode(frame, type=c.FrameMessage))
        assert decoded == {"type": "frame", "seq": 5, "ts": 1.0, "image": b"\xff\xd8\xff", "opts": {"num_hands": 1}}


def test_fleet_commands_conform() -> None:
    conform(throttle_command("kiosk", 130.0, 100.0), c.ThrottleCommand)
    conform(stream_throttle_command("1a-3f", 2.0, 30.0), c.ThrottleCommand)
    conform(stream_throttle_command("1a-3f", None), c.ThrottleCommand)


async def test_every_reporter_payload_conforms() -> None:
    settings = load_settings({"EDGE_ID": "cam-1", "METRICS_INTERVAL": "0.1", "EVENT_DEBOUNCE_MS": "0",
                              "MQTT_RESULTS": "true"}, env_file=None)
    bus = LocalBus(settings)
    got: dict[str, list[dict[str, Any]]] = {kind: [] for kind in ("status", "metrics", "events", "results")}
    for kind, into in got.items():
        def collect(t: str, p: bytes, props: dict[str, Any], into: list[dict[str, Any]] = into) -> None:
            into.append(decode(p, props["content_type"]))

        bus.subscribe(f"hgr/v1/edges/+/{kind}", collect)
    reporter = EdgeReporter(settings, bus, StandInNode())
    await reporter.start()
    reporter.on_frame("s-1", "kiosk", protocol.result(0, 1.0, _detection(), 0))
    await eventually(lambda: got["metrics"] and got["events"] and got["results"], 10, "metrics, event, result")
    reporter.on_stream_closed("s-1")
    await reporter.stop()
    await eventually(lambda: got["status"][-1]["status"] == "offline" and len(got["events"]) == 2, 10,
                     "the end event and offline")

    online = [m for m in got["status"] if m["status"] == "online"]
    offline = [m for m in got["status"] if m["status"] == "offline"]
    assert online and offline and [e["phase"] for e in got["events"]] == ["new", "end"]
    for docs, tp in ((online, c.StatusOnline), (offline, c.StatusOffline), (got["metrics"], c.MetricsPayload),
                     (got["events"], c.EventPayload), (got["results"], c.ResultsPayload)):
        for doc in docs:
            conform(doc, tp)
            # A reader may go without most fields (NotRequired); the edge sends them all the same.
            missing = set(tp.__annotations__) - set(doc) - SITUATIONAL.get(tp, set())
            assert not missing, f"the reporter's {tp.__name__} lacks {sorted(missing)}"


# Fields an edge sends only sometimes: its cameras (CAMERAS), the Will's ts (written before the edge goes
# away), an end event's duration.
SITUATIONAL: dict[Any, set[str]] = {c.StatusOnline: {"cameras"}, c.StatusOffline: {"ts"},
                                    c.MetricsPayload: {"cameras"}, c.EventPayload: {"duration_s"}}


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")  # the shared pool's loop
async def test_a_real_detection_conforms(edge_pool: InferencePool, frames: list[bytes]) -> None:
    """The model's own output, through a worker and the pool: a DetectionResult, hands included."""
    results = [await edge_pool.submit(frame, DetectOptions()) for frame in frames[:3]]
    assert any(r["hands"] for r in results), "no hand found in the first photos: nothing nested was checked"
    for result in results:
        conform(result, c.DetectionResult)
        conform(protocol.result(1, None, result, 0), c.ResultMessage)


# --- what the docs show ---

def _json_examples(doc: Path) -> list[dict[str, Any]]:
    """Every JSON object in the ```json blocks of ``doc`` (a block may hold several; unparsable ones,
    abbreviated with ``…``, are skipped)."""
    found = []
    decoder = json.JSONDecoder()
    for block in re.findall(r"```json\n(.*?)```", doc.read_text(), re.DOTALL):
        pos = 0
        while (pos := _skip_space(block, pos)) < len(block):
            try:
                value, pos = decoder.raw_decode(block, pos)
            except ValueError:
                break
            if isinstance(value, dict):
                found.append(value)
    return found


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _kind(doc: dict[str, Any]) -> Any:
    by_type = {"hello": c.HelloMessage, "frame": c.FrameMessage, "result": c.ResultMessage, "error": c.ErrorMessage}
    if doc.get("type") in by_type:
        return by_type[doc["type"]]
    if "cmd" in doc:
        return {"throttle": c.ThrottleCommand, "rebirth": c.RebirthCommand}[doc["cmd"]]
    if "v" in doc:
        if doc.get("status") == "online":
            return c.StatusOnline
        if doc.get("status") == "offline":
            return c.StatusOffline
        if "phase" in doc:
            return c.EventPayload
        if "frames" in doc:
            return c.MetricsPayload
    return None


def _unabbreviated(value: Any) -> Any:
    """protocol.md's examples as real messages: the image placeholder an empty image, and the ``"… 21 points"``
    notes in the landmark lists left out."""
    if isinstance(value, dict):
        return {k: b"" if k == "image" else _unabbreviated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unabbreviated(v) for v in value if not (isinstance(v, str) and v.startswith("…"))]
    return value


@pytest.mark.parametrize("doc, expected", [
    ("protocol.md", {"HelloMessage", "FrameMessage", "ResultMessage", "ErrorMessage"}),
    ("mqtt.md", {"StatusOnline", "StatusOffline", "MetricsPayload", "EventPayload", "ThrottleCommand",
                 "RebirthCommand"}),
])
def test_the_docs_examples_are_valid_messages(doc: str, expected: set[str]) -> None:
    """Every field of every example fits its declaration, bounds included (protocol.md's placeholders aside)."""
    seen, wrong = set(), []
    for example in _json_examples(DOCS / doc):
        tp = _kind(example)
        if tp is None:
            continue
        seen.add(tp.__name__)
        try:
            conform(_unabbreviated(example) if doc == "protocol.md" else example, tp)
        except AssertionError as exc:
            wrong.append(str(exc))
    assert seen == expected, f"{doc}: examples found for {sorted(seen)}"
    assert not wrong, f"{doc} examples disagree with hgr.common.contracts:\n" + "\n".join(wrong)


# --- what the hub stores: field names taken from the declarations ---

STATUS_KEYS = set(c.StatusOnline.__annotations__) | set(c.StatusOffline.__annotations__)
# The hub's own fields of an edge's hash (docs/mqtt.md "Hub"): not from a message.
HUB_FIELDS = {"online_since", "status_at", "last_seen", "seq_lo", "seq_hi", "hole_at", "snap_seq", "snapshot",
              "msgs", "dups", "gaps", "events", "last_event"}


def test_status_msg_and_fleet_status_lua_use_the_declared_field_names() -> None:
    """``StatusMsg`` carries a status message's fields under their declared names; RedisFleetStore passes
    them in its order (``STATUS_ARGS``) as fleet_status.lua's ARGV, which the script's header names; and every
    field the script writes to an edge's hash is a declared one (or the hub's own)."""
    fields = list(STATUS_ARGS)
    assert set(fields) <= STATUS_KEYS, sorted(set(fields) - STATUS_KEYS)
    lua = (HUB / "fleet_status.lua").read_text()
    argv = re.search(r"-- ARGV: (.*?)\n-- Returns", lua, re.DOTALL)
    assert argv is not None
    names = [re.sub(r"\(.*?\)|_json$", "", n.strip(" -\n")).strip()
             for n in re.sub(r"\([^)]*\)", "", argv.group(1).replace("\n--", "")).split(",")]
    assert names == ["edge_id", "now", "online", *fields], names
    keys = _hset_fields(lua)
    assert keys - HUB_FIELDS <= STATUS_KEYS, sorted(keys - HUB_FIELDS - STATUS_KEYS)
    assert {"status", "session", "birth_seq", "metrics_interval_s"} <= keys  # the parse found them


def _hset_fields(lua: str) -> set[str]:
    """The field names a Lua script writes to an edge's hash (``HSET h, field, value, field, value…``)."""
    fields: set[str] = set()
    for start in (m.end() for m in re.finditer(r"'HSET', h, ", lua)):
        end = lua.index(")", start)  # the call's own: its arguments hold no parentheses
        args = [a.strip() for a in lua[start:end].split(",")]
        fields |= {a.strip("'") for a in args[::2] if a.startswith("'")}
    return fields


def test_the_stored_metrics_snapshot_uses_the_declared_field_names() -> None:
    """The snapshot fleet_ingest.lua stores (and ``edge_view`` reads) keeps a metrics message's fields under
    their declared names."""
    snapshot = metrics_snapshot({"session": "s", "seq": 1})
    assert set(snapshot) <= set(c.MetricsPayload.__annotations__), sorted(set(snapshot))
    assert set(snapshot["frames"]) == set(c.FrameCounts.__annotations__)
    assert set(snapshot["outbox"]) == set(c.OutboxCounts.__annotations__)
    lua = (HUB / "fleet_ingest.lua").read_text()
    stored = _hset_fields(lua)
    assert "snapshot" in stored and stored <= HUB_FIELDS | STATUS_KEYS, sorted(stored - HUB_FIELDS - STATUS_KEYS)
