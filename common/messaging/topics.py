"""Fleet topic names and payload encoding: the MQTT contract between edges and hubs, as pure functions.

Topics (``prefix`` is ``MQTT_TOPIC_PREFIX``, default ``hgr/v1``)::

    {prefix}/edges/{edge_id}/status    retained, QoS 1: birth ("online") / Will + shutdown ("offline")
    {prefix}/edges/{edge_id}/metrics   QoS 1, every METRICS_INTERVAL s, with a per-session sequence number
    {prefix}/edges/{edge_id}/events    QoS 1, debounced per-stream finger/gesture changes (new/update/end)
    {prefix}/edges/{edge_id}/results   QoS 0, every frame's result (only with MQTT_RESULTS=true)
    {prefix}/edges/{edge_id}/control   QoS 1, hub → edge commands (throttle, rebirth)

Payloads are JSON by default so any MQTT client can read them; msgpack when MQTT_PAYLOAD=msgpack. The
MQTT v5 content type says which, and ``decode`` also sniffs it (JSON documents start with ``{``), so a
hub reads both while a fleet migrates. docs/mqtt.md has example payloads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

import msgpack
import msgspec

from hgr.common import jsonsafe
from hgr.common.names import valid_edge_id

KINDS = ("status", "metrics", "events", "results", "control")
CONTENT_TYPES = {"json": "application/json", "msgpack": "application/vnd.msgpack"}
SCHEMA_VERSION = 1
MAX_PAYLOAD = 256 * 1024  # the default of MQTT_MAX_PAYLOAD: a fleet message is small; bigger is refused unread


class PayloadError(ValueError):
    """A fleet message that cannot be read: counted and dropped by the receiver, never fatal."""


# --- topics ---

def edge_topic(prefix: str, edge_id: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown topic kind {kind!r}")
    return f"{prefix}/edges/{edge_id}/{kind}"


CAMERA_LEAVES = ("fingers", "gesture", "hands", "available")


def camera_topic(prefix: str, edge_id: str, name: str, leaf: str) -> str:
    """A per-camera state topic (retained, plain text; docs/mqtt.md "Per-camera state")."""
    if leaf not in CAMERA_LEAVES:
        raise ValueError(f"unknown camera topic {leaf!r}")
    return f"{prefix}/edges/{edge_id}/cameras/{name}/{leaf}"


def edges_filter(prefix: str, kind: str) -> str:
    """The filter matching ``kind`` messages of every edge."""
    return f"{prefix}/edges/+/{kind}"


def shared_filter(group: str, topic_filter: str) -> str:
    """MQTT v5 shared subscription: the broker gives each message to one member of ``group``."""
    return f"$share/{group}/{topic_filter}"


def parse_edge_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """(edge_id, kind) of a fleet topic, or None when ``topic`` is not one."""
    head = f"{prefix}/edges/"
    if not topic.startswith(head):
        return None
    rest = topic[len(head):].split("/")
    if len(rest) != 2 or rest[1] not in KINDS or not valid_edge_id(rest[0]):
        return None
    return rest[0], rest[1]


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest); ``$share/group/`` is ignored."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    # Wildcards never match topics starting with '$' (MQTT 4.7.2).
    if topic.startswith("$") and f_parts[0] in ("+", "#"):
        return False
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part != "+" and part != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


# --- payload encoding ---

def encode(doc: Mapping[str, Any], fmt: str = "json") -> tuple[bytes, str]:
    """(bytes, MQTT v5 content type) of ``doc`` (a ``contracts.EdgePayload`` or ``ControlCommand``)."""
    if fmt == "msgpack":
        packed: bytes = msgpack.packb(doc, use_bin_type=True)
        return packed, CONTENT_TYPES["msgpack"]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(), CONTENT_TYPES["json"]


Doc = TypeVar("Doc")
_OBJECT: Any = dict[str, Any]  # what ``decode`` returns without a declared type: any object


_DECODERS: dict[Any, tuple[msgspec.json.Decoder[Any], msgspec.msgpack.Decoder[Any]]] = {}


def _decoders(tp: Any) -> tuple[msgspec.json.Decoder[Any], msgspec.msgpack.Decoder[Any]]:
    """One JSON and one msgpack decoder per declared type, built once (the hub decodes thousands a second)."""
    found = _DECODERS.get(tp)
    if found is None:
        found = _DECODERS[tp] = msgspec.json.Decoder(tp), msgspec.msgpack.Decoder(tp)
    return found


def decode(payload: bytes, content_type: str | None = None, max_bytes: int = MAX_PAYLOAD,
           tp: type[Doc] = _OBJECT) -> Doc:
    """The document in ``payload``, checked against ``tp`` (a ``common.contracts`` declaration; default any
    object); PayloadError when it is not a JSON/msgpack object, does not fit ``tp`` or is over ``max_bytes``."""
    if len(payload) > max_bytes:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {max_bytes}")
    if not payload:
        raise PayloadError("empty payload")
    from_json, from_msgpack = _decoders(tp)
    try:
        if content_type == CONTENT_TYPES["msgpack"] or (content_type is None and payload[:1] != b"{"):
            doc: Doc = from_msgpack.decode(payload)
        else:
            # msgspec refuses NaN, Infinity and unpaired surrogates itself; the shape (depth, values) is
            # jsonsafe's to check, before any parsing.
            jsonsafe.check_shape(payload)
            doc = from_json.decode(payload)
    except jsonsafe.JsonTooComplex as exc:
        raise PayloadError(f"undecodable payload: {exc.message}") from None
    except msgspec.ValidationError as exc:
        raise PayloadError(_invalid(exc)) from None
    except (msgspec.DecodeError, RecursionError) as exc:  # RecursionError: msgpack nested past msgspec's limit
        raise PayloadError(f"undecodable payload: {type(exc).__name__}") from None
    return doc


def conform(doc: Any, tp: type[Doc]) -> Doc:
    """``doc`` (already decoded) checked against the declaration ``tp``; PayloadError when it does not fit."""
    try:
        return msgspec.convert(doc, tp)
    except msgspec.ValidationError as exc:
        raise PayloadError(_invalid(exc)) from None


def _invalid(exc: msgspec.ValidationError) -> str:
    # msgspec quotes a value it did not expect (``Invalid enum value '…'``): a log line stays short anyway.
    text = str(exc)
    return f"invalid payload: {text if len(text) <= 200 else text[:200] + '…'}"
