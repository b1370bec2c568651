"""hgr.common.contracts against what the code really sends and what the docs show.

mypy checks that the code builds these shapes; this checks the values at run time: the messages the
protocol functions, the reporter and the fleet commands produce conform to their TypedDict (keys and
value types, nested), a real detection from the model conforms to ``DetectionResult``, and every JSON
example in docs/protocol.md and docs/mqtt.md has exactly the keys its TypedDict declares.
"""

from __future__ import annotations

import json
import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest
from fleet_helpers import StandInNode
from support import eventually

from hgr.common import contracts as c
from hgr.common.config import load_settings
from hgr.common.inference.pool import InferencePool
from hgr.common.messaging.bus import LocalBus
from hgr.common.messaging.topics import decode
from hgr.common.options import DetectOptions
from hgr.edge import protocol
from hgr.edge.reporter import EdgeReporter
from hgr.hub.fleet_logic import stream_throttle_command, throttle_command

DOCS = Path(__file__).resolve().parent.parent / "docs"


def violations(value: Any, tp: Any, path: str = "$", *, keys_only: bool = False) -> list[str]:
    """What in ``value`` does not fit ``tp``. ``keys_only``: check objects' keys, ignore scalar values
    (the docs abbreviate long arrays with a string)."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return []
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        hints = get_type_hints(tp)
        required, allowed = set(tp.__required_keys__), set(hints)
        wrong = [f"{path}: missing {k!r}" for k in sorted(required - value.keys())]
        wrong += [f"{path}: unexpected {k!r}" for k in sorted(value.keys() - allowed)]
        for key in sorted(value.keys() & allowed):
            wrong += violations(value[key], hints[key], f"{path}.{key}", keys_only=keys_only)
        return wrong
    if origin in (Union, types.UnionType):
        tries = [violations(value, a, path, keys_only=keys_only) for a in args]
        return [] if any(not t for t in tries) else min(tries, key=len)
    if origin is list:
        if not isinstance(value, list):
            return [] if keys_only else [f"{path}: expected a list"]
        return [v for i, item in enumerate(value)
                for v in violations(item, args[0], f"{path}[{i}]", keys_only=keys_only)]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        return [v for k, item in value.items() for v in
                ([f"{path}: key {k!r} is not a string"] if not isinstance(k, str) else [])
                + violations(item, args[1], f"{path}.{k}", keys_only=keys_only)]
    if keys_only:
        return []
    if origin is Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {args}"]
    if tp is type(None):
        return [] if value is None else [f"{path}: expected null"]
    if tp is float:  # JSON and msgpack carry 3.0 as 3
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp in (str, bool, bytes):
        ok = isinstance(value, tp)
    else:
        raise TypeError(f"{path}: the checker does not know {tp!r}")
    return [] if ok else [f"{path}: {value!r} is not a {tp.__name__}"]


def conform(value: Any, tp: Any) -> None:
    wrong = violations(value, tp)
    assert not wrong, f"not a {tp.__name__}:\n" + "\n".join(wrong)


# --- the checker itself ---

def test_the_checker_catches_missing_unexpected_and_mistyped_fields() -> None:
    good: c.ErrorMessage = {"type": "error", "code": "bad_frame", "message": "no"}
    assert violations(good, c.ErrorMessage) == []
    assert violations({**good, "seq": 3}, c.ErrorMessage) == []
    assert violations({"type": "error", "code": "x"}, c.ErrorMessage) == ["$: missing 'message'"]
    assert violations({**good, "extra": 1}, c.ErrorMessage) == ["$: unexpected 'extra'"]
    assert violations({**good, "seq": "3"}, c.ErrorMessage) == ["$.seq: '3' is not a int"]
    assert violations({**good, "type": "result"}, c.ErrorMessage)
    offline = {"v": 1, "edge_id": "e", "session": "s", "status": "offline", "reason": "will", "conn": 1}
    assert violations(offline, c.StatusOffline) == []  # ts is NotRequired, and read as such at run time
    assert violations({**offline, "ts": True}, c.StatusOffline) == ["$.ts: True is not a float"]


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
    for encoding in protocol.ENCODINGS:
        frame = protocol.encode_frame(5, b"\xff\xd8\xff", ts=1.0, opts={"num_hands": 1}, encoding=encoding)
        conform(json.loads(frame) if isinstance(frame, str) else _unpack(frame), c.FrameMessage)


def _unpack(data: bytes) -> Any:
    import msgpack

    return msgpack.unpackb(data, raw=False)


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
    for doc in online:
        conform(doc, c.StatusOnline)
    for doc in offline:
        conform(doc, c.StatusOffline)
    for doc in got["metrics"]:
        conform(doc, c.MetricsPayload)
    for doc in got["events"]:
        conform(doc, c.EventPayload)
    for doc in got["results"]:
        conform(doc, c.ResultsPayload)


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


@pytest.mark.parametrize("doc, expected", [
    ("protocol.md", {"HelloMessage", "FrameMessage", "ResultMessage", "ErrorMessage"}),
    ("mqtt.md", {"StatusOnline", "StatusOffline", "MetricsPayload", "EventPayload", "ThrottleCommand",
                 "RebirthCommand"}),
])
def test_the_docs_examples_have_the_contract_keys(doc: str, expected: set[str]) -> None:
    seen, wrong = set(), []
    for example in _json_examples(DOCS / doc):
        tp = _kind(example)
        if tp is None:
            continue
        seen.add(tp.__name__)
        wrong += [f"{tp.__name__} {v}" for v in violations(example, tp, keys_only=True)]
    assert seen == expected, f"{doc}: examples found for {sorted(seen)}"
    assert not wrong, f"{doc} examples disagree with hgr.common.contracts:\n" + "\n".join(wrong)
