"""Result cache: the same image, model and options give the same answer, so answer it once.

The key is SHA-256 of the image bytes + the answer's id (the model's id, which changes whenever the
bundle's bytes do, and a digest of the settings that change a still's answer, ``ANSWER_SETTINGS``, with what
runs the models on this CPU, ``keyed_inference``) + the options' cache key. Two stores
behind one interface: Redis (shared by every hub; entries expire after ``CACHE_TTL``, and the server's
``maxmemory`` with ``allkeys-lru`` bounds the total) and a
bounded in-process LRU with the same TTL. A cache failure is only ever a miss: the request goes on
to the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

from hgr.common import metrics
from hgr.common.config import Settings
from hgr.common.contracts import DetectionResult
from hgr.common.inference.hands.runtime import Choice, choose_here
from hgr.common.options import DetectOptions
from hgr.hub.redis_conn import RedisConn, RedisDown

log = logging.getLogger("hgr.hub.cache")


def cache_key(prefix: str, data: bytes, model_id: str, opts: DetectOptions) -> str:
    return f"{prefix}cache:{hashlib.sha256(data).hexdigest()}:{model_id}:{opts.cache_key()}"


# What a still's answer depends on, setting by setting. Every field of ``Settings`` is in exactly one of
# the three tables below (tests/test_cache.py holds them to the dataclass), so a new setting cannot reach
# the answer unnoticed: whoever adds one decides where it goes.
#
# 1. In the key, through ``answer_id``: the worker reads them while answering a still.
ANSWER_SETTINGS: tuple[str, ...] = (
    "min_hand_detection_confidence",  # the palm detector's threshold: fewer or more hands
    "min_hand_presence_confidence",   # the landmark model's presence threshold: fewer or more hands
    "exposure_retry",                 # a darker/brighter look when no hand is found (`retry`)
    "stream_pipeline",                # the engine (LiteRT or MediaPipe Tasks): the same hands, not the same bits
    "inference_runtime",              # what runs the models, in which number format (bf16 moves a few counts);
    "inference_precision",            # `auto` is keyed as what it resolves to on this CPU (keyed_inference)
    "infer_max_side",                 # the side an image is scaled to before inference
    "max_image_size",                 # the worker's limits: an image one hub refuses must not be answered
    "max_image_pixels",               # from another hub's cache entry
    "max_image_side",
)

# 2. In the key through another part of it.
KEYED_ELSEWHERE: dict[str, str] = {
    "model_path": "the model id: a digest of the bundle's bytes",
    "model_lite_path": "the model id of the lite bundle",
    "model_variant": "the options' `model` (the default variant is resolved into every request's options)",
    "model_cache_dir": "where the bundle is kept; its bytes are the model id",
    "model_url": "where the bundle comes from; its bytes are the model id",
    "model_sha256": "checks the download; the bytes are the model id",
    "model_index_url": "where the bundle is built from; its bytes are the model id",
    "num_hands": "the options' `num_hands` (the default is resolved into every request's options)",
    "redis_key_prefix": "the key's own prefix",
}

# 3. Never change a still's answer (only whether, when, how fast or where it is served, or streams).
NOT_ANSWER_SETTINGS: dict[str, str] = {
    **dict.fromkeys(("app_name", "app_version", "debug", "log_level", "log_format", "host", "port",
                     "edge_port", "metrics_port", "workers"), "service identity, logging, listeners"),
    "model_download_timeout": "how long fetching the bundle may take",
    "min_tracking_confidence": "VIDEO mode only: a still is never tracked",
    **dict.fromkeys(("max_request_size", "max_batch_images", "max_form_fields", "max_form_field_size",
                     "max_json_depth", "max_json_values", "body_timeout", "header_timeout",
                     "keep_alive_timeout", "max_header_bytes", "max_headers", "forwarded_allow_ips"),
                    "request limits checked by the hub before the cache"),
    **dict.fromkeys(("batch_size", "max_batch_delay_ms"), "scheduling in the pool, not the answer"),
    **dict.fromkeys(("edge_id", "max_frame_bytes", "max_fps", "max_connections", "idle_timeout", "web_dir",
                     "ws_max_control_rate", "ws_max_fragments", "ws_max_unread", "ws_unread_timeout",
                     "max_connections_per_key", "ws_allowed_origins"),
                    "the edge's streams"),
    **dict.fromkeys(("detect_interval_ms", "detect_interval_frames", "motion_gate",
                     "motion_threshold", "motion_max_skip_ms", "reduced_decode_min_side"),
                    "stream frames only: a still is one untracked frame, decoded in full"),
    **dict.fromkeys(("auth_failure_limit", "auth_failure_window"), "who may ask, not the answer"),
    **dict.fromkeys(("cameras", "camera_fps", "camera_open_timeout", "camera_read_timeout", "camera_reconnect_min",
                     "camera_reconnect_max", "ha_discovery", "ha_discovery_prefix"),
                    "the edge's own cameras and what it publishes of them"),
    **dict.fromkeys(("fleet_edge_max_fps", "fleet_max_edges", "fleet_max_keys_per_edge"),
                    "what the hub believes of edges' reports"),
    **dict.fromkeys(("auth_enabled", "api_keys", "rate_limit_enabled", "rate_limit_requests",
                     "rate_limit_window", "rate_limit_burst", "rate_limit_shadow", "rate_limit_fail",
                     "rate_limit_redis_url", "fleet_quota_frames"),
                    "who may ask and how often, checked before the cache"),
    **dict.fromkeys(("cache_enabled", "cache_ttl", "cache_max_entries"), "the cache itself"),
    **dict.fromkeys(("redis_enabled", "redis_host", "redis_port", "redis_db", "redis_url", "redis_cluster",
                     "redis_sentinels", "redis_sentinel_master", "redis_sentinel_password"),
                    "where the cache lives"),
    **dict.fromkeys(("mqtt_url", "mqtt_topic_prefix", "mqtt_keepalive", "mqtt_payload", "mqtt_max_payload",
                     "mqtt_share_group", "mqtt_outbox_size", "mqtt_outbox_settle", "mqtt_client_id",
                     "mqtt_session_expiry", "mqtt_results", "mqtt_ca_file", "mqtt_client_cert", "mqtt_client_key",
                     "metrics_interval", "edge_stale_after", "edge_forget_after", "fleet_gauges_interval",
                     "event_debounce_ms"), "the fleet"),
}


def keyed_inference(settings: Settings) -> Choice | None:
    """What ``INFERENCE_RUNTIME``/``INFERENCE_PRECISION`` resolve to on this CPU, resolved as the workers resolve
    them, for ``answer_id``: ``auto`` is OpenVINO bf16 on a CPU with bf16 arithmetic and LiteRT fp32 elsewhere, so
    hubs on such CPUs sharing one cache run different number formats under the same settings. None with
    ``STREAM_PIPELINE=mediapipe``: MediaPipe Tasks answers and nothing resolves them. Called once, when the hub
    is made; ValueError (naming the setting) for a choice this machine cannot meet, which hgr.startup refuses
    before any hub is made."""
    if settings.stream_pipeline != "litert":
        return None
    return choose_here(settings.inference_runtime, settings.inference_precision)


def answer_id(model_id: str, settings: Settings, inference: Choice | None) -> str:
    """The model's id plus a digest of the settings that change a still's answer (``ANSWER_SETTINGS``) and of
    ``inference``, what runs the models (``keyed_inference``): hubs with different settings or CPUs sharing one
    Redis never serve each other's answers, and changing a setting retires the old entries at once instead of
    after ``CACHE_TTL``. (A worker whose start-up check refused bf16 answers in fp32 under the bf16 key: the
    answers bf16 is held to.)"""
    values = [[name, getattr(settings, name)] for name in ANSWER_SETTINGS]
    if inference is not None:
        values.append(["inference", inference.name])
    digest = hashlib.sha256(json.dumps(values, separators=(",", ":")).encode()).hexdigest()[:16]
    return f"{model_id}+{digest}"


class ResultCache(Protocol):
    enabled: bool  # False: callers skip the lookup, and hashing the image for its key

    async def get(self, key: str) -> DetectionResult | None: ...
    async def set(self, key: str, result: DetectionResult) -> None: ...
    def status(self) -> dict[str, Any]: ...


class _Counts:
    """Hit/miss/error counts for /status (the Prometheus counter is process-wide and shared)."""

    def __init__(self) -> None:
        self.hits = self.misses = self.errors = 0

    def record(self, result: str) -> None:
        metrics.CACHE.labels(result).inc()
        if result == "hit":
            self.hits += 1
        elif result == "miss":
            self.misses += 1
        else:
            self.errors += 1

    def status(self) -> dict[str, Any]:
        lookups = self.hits + self.misses + self.errors
        return {"hits": self.hits, "misses": self.misses, "errors": self.errors,
                "hit_rate": round(self.hits / lookups, 4) if lookups else None}


class MemoryCache:
    enabled = True

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self._items: OrderedDict[str, tuple[float, DetectionResult]] = OrderedDict()
        self._max, self._ttl = max_entries, ttl_s
        self.counts = _Counts()

    async def get(self, key: str) -> DetectionResult | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            if item is not None:
                del self._items[key]
            self.counts.record("miss")
            return None
        self._items.move_to_end(key)
        self.counts.record("hit")
        return item[1]

    async def set(self, key: str, result: DetectionResult) -> None:
        self._items[key] = (time.monotonic() + self._ttl, result)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def status(self) -> dict[str, Any]:
        return {"enabled": True, "store": "memory", "entries": len(self._items), "max_entries": self._max,
                "ttl_s": self._ttl, **self.counts.status()}


class RedisCache:
    enabled = True

    def __init__(self, conn: RedisConn, ttl_s: int) -> None:
        self.conn, self._ttl = conn, ttl_s
        self.counts = _Counts()

    async def get(self, key: str) -> DetectionResult | None:
        try:
            raw = await self.conn.call(lambda r: r.get(key))
            # Written by ``set`` below; the hub trusts its own Redis.
            result: DetectionResult | None = json.loads(raw) if raw is not None else None
        except (RedisDown, ValueError) as exc:
            log.debug("cache get failed: %s", exc)
            self.counts.record("error")
            return None
        self.counts.record("hit" if result is not None else "miss")
        return result

    async def set(self, key: str, result: DetectionResult) -> None:
        payload = json.dumps(result, separators=(",", ":"))
        try:
            await self.conn.call(lambda r: r.set(key, payload, ex=self._ttl))
        except RedisDown as exc:
            log.debug("cache set failed: %s", exc)

    def status(self) -> dict[str, Any]:
        return {"enabled": True, "store": "redis", "ttl_s": self._ttl, **self.counts.status()}


class NoCache:
    enabled = False

    async def get(self, key: str) -> DetectionResult | None:
        return None

    async def set(self, key: str, result: DetectionResult) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"enabled": False}
