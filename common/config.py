"""All configuration, in one place: environment variables, optionally from a ``.env`` file.

Each setting is a dataclass field whose metadata names its variable, documents it, and states the
values it accepts. ``load_settings()`` parses and validates everything at start-up; a wrong value stops
the process with a message naming the variable and what it accepts (``ConfigError``), instead of failing
later at the first request. ``hgr config`` prints the table the README carries.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from hgr.common.camera_spec import CameraSpecError, parse_cameras
from hgr.common.errors import ConfigError
from hgr.common.names import valid_edge_id
from hgr.common.redis_url import SENTINEL_SCHEMES, parse_redis_url

KiB = 1024
MiB = 1024 * KiB


def _s(env: str, default: Any, help: str, *, choices: tuple[str, ...] | None = None,
       min: float | None = None, max: float | None = None, secret: bool = False) -> Any:
    return field(default=default, metadata={
        "env": env, "help": help, "choices": choices, "min": min, "max": max, "secret": secret})


@dataclass(frozen=True)
class Settings:
    # --- service ---
    app_name: str = _s("APP_NAME", "hgr", "Service name shown in /status, logs and metrics.")
    app_version: str = _s("APP_VERSION", "1.0.0", "Version reported by /status and the edge's birth message.")
    debug: bool = _s("DEBUG", False, "Verbose logs and tracebacks in logs (never in responses).")
    log_level: str = _s("LOG_LEVEL", "info", "Log level.", choices=("debug", "info", "warning", "error"))
    log_format: str = _s("LOG_FORMAT", "json", "Log line format.", choices=("json", "text"))
    host: str = _s("HOST", "127.0.0.1", "Address the HTTP/WebSocket server binds to.")
    port: int = _s("PORT", 8000, "Port of `hgr up` and `hgr hub`.", min=0, max=65535)
    edge_port: int = _s("EDGE_PORT", 8001, "Port of `hgr edge` when run on its own.", min=0, max=65535)
    metrics_port: int = _s("METRICS_PORT", 0, "Also serve Prometheus `/metrics` on this port, on its own listener "
                           "(HOST); 0 = only on the main port. Must differ from the server's port.",
                           min=0, max=65535)
    workers: int = _s("WORKERS", 0, "Inference worker processes; 0 = one per CPU core.", min=0, max=256)

    # --- model ---
    model_path: str = _s("HGR_MODEL_PATH", "", "Path to a `hand_landmarker.task` bundle; wins over all else.")
    model_lite_path: str = _s("HGR_MODEL_LITE_PATH", "", "Path to the lite bundle, so a stream can pick "
                              "`opts.model = lite` while the default stays full.")
    model_variant: str = _s("HGR_MODEL_VARIANT", "full", "Model bundle to fetch or build.", choices=("full", "lite"))
    model_cache_dir: str = _s("HGR_MODEL_CACHE_DIR", "~/.cache/hgr/models", "Where fetched/built bundles are kept.")
    model_url: str = _s("HGR_MODEL_URL", "", "Override the official download URL of the bundle (empty = official).")
    model_sha256: str = _s("HGR_MODEL_SHA256", "", "Expected SHA-256 of the download (empty = the official "
                           "bundle's pinned digest).")
    model_index_url: str = _s("HGR_MODEL_INDEX_URL", "https://pypi.org/simple",
                              "Package index used to build the bundle from the mediapipe 0.10.21 wheel.")
    model_download_timeout: float = _s("HGR_MODEL_DOWNLOAD_TIMEOUT", 10.0,
                                       "Seconds before a model download attempt gives up.", min=0.1)
    num_hands: int = _s("NUM_HANDS", 2, "Default maximum hands per image (a stream may ask for fewer).",
                        min=1, max=4)
    min_hand_detection_confidence: float = _s("MIN_HAND_DETECTION_CONFIDENCE", 0.5,
                                              "Palm detector score threshold.", min=0, max=1)
    min_hand_presence_confidence: float = _s("MIN_HAND_PRESENCE_CONFIDENCE", 0.5,
                                             "Landmark model hand-presence threshold.", min=0, max=1)
    min_tracking_confidence: float = _s("MIN_TRACKING_CONFIDENCE", 0.5,
                                        "Tracking threshold in VIDEO mode (below: re-detect).", min=0, max=1)
    exposure_retry: bool = _s("EXPOSURE_RETRY", True,
                              "Stills only (REST, `hgr detect`; never streams): when no hand is found, look again "
                              "at a darker and a brighter copy (a hand against a bright window or in shadow); "
                              "such a result carries `retry` (`darker` or `brighter`). More photos counted right "
                              "end to end, a few more miscounted: see docs/accuracy.md.")

    # --- images and limits ---
    max_image_size: int = _s("MAX_IMAGE_SIZE", 20 * MiB, "Largest accepted image, bytes.", min=1)
    max_image_pixels: int = _s("MAX_IMAGE_PIXELS", 40_000_000,
                               "Largest accepted width×height; checked from the header before decoding.", min=1)
    max_request_size: int = _s("MAX_REQUEST_SIZE", 64 * MiB,
                               "Largest REST request body (JSON or multipart), bytes.", min=1)
    max_batch_images: int = _s("MAX_BATCH_IMAGES", 32, "Most images in one batch or upload request.", min=1)
    max_form_fields: int = _s("MAX_FORM_FIELDS", 16, "Most non-file fields (such as `options`) in one multipart "
                              "upload.", min=1)
    max_form_field_size: int = _s("MAX_FORM_FIELD_SIZE", 64 * KiB, "Largest non-file field of a multipart "
                                  "upload, bytes (files are bounded by `MAX_IMAGE_SIZE`).", min=1)
    max_image_side: int = _s("MAX_IMAGE_SIDE", 16_384, "Longest accepted image width or height, px; checked from "
                             "the header before decoding (OpenCV inside MediaPipe aborts the process at 32767).",
                             min=1, max=32_766)
    infer_max_side: int = _s("INFER_MAX_SIDE", 4096, "Images with a longer side are downscaled to it before "
                             "inference (results keep the sent size; the model looks at 224 px crops).",
                             min=64, max=16_384)
    max_json_depth: int = _s("MAX_JSON_DEPTH", 32, "Deepest nesting of a JSON body, WebSocket or MQTT message "
                             "(beyond: `json_too_complex`, before parsing).", min=2, max=500)
    max_json_values: int = _s("MAX_JSON_VALUES", 10_000, "Most values in one JSON document (containers + "
                              "elements), counted while the body arrives.", min=16)
    body_timeout: float = _s("BODY_TIMEOUT", 60.0, "Seconds a REST request body may take to arrive in full "
                             "(beyond: 408 `request_timeout`).", min=0.1)
    header_timeout: float = _s("HEADER_TIMEOUT", 10.0, "Seconds a client may take from connecting (or from the "
                               "first byte of a further request) to the end of its headers; beyond, the "
                               "connection is closed.", min=0.1)
    keep_alive_timeout: int = _s("KEEP_ALIVE_TIMEOUT", 5, "Seconds an idle keep-alive HTTP connection is kept "
                                 "open (uvicorn `timeout_keep_alive`).", min=1, max=3600)
    max_header_bytes: int = _s("MAX_HEADER_BYTES", 64 * KiB, "Largest request head (request line + header names "
                               "and values), bytes, on every listener; beyond: 431 `headers_too_large` and the "
                               "connection closed (the default takes all that the shipped nginx forwards).",
                               min=1 * KiB, max=16 * MiB)
    max_headers: int = _s("MAX_HEADERS", 100, "Most header fields in one request, on every listener; beyond: 431 "
                          "`headers_too_large`.", min=8, max=10_000)
    forwarded_allow_ips: str = _s("FORWARDED_ALLOW_IPS", "127.0.0.1,::1", "Proxies whose `X-Forwarded-For` is "
                                  "believed (addresses or networks, comma-separated; `*` = any: only where nothing "
                                  "but the proxy can reach the server). Others are the client themselves. uvicorn's "
                                  "own variable, now read here (and from `.env`).")

    # --- batching (edge and hub) ---
    # Measured (docs/benchmarks.md): 8 let an overloaded worker's queue hold 8 frames, doubling p99
    # latency under overload for no throughput gain; 2 keeps the batching and the latency.
    batch_size: int = _s("BATCH_SIZE", 2, "A batch for one worker closes at this many frames...", min=1, max=1024)
    max_batch_delay_ms: float = _s("MAX_BATCH_DELAY_MS", 2.0, "...or this long after its first frame.",
                                   min=0, max=1000)

    # --- edge ---
    edge_id: str = _s("EDGE_ID", "", "This edge's id in the fleet (default: hostname). No `+ # /`, ≤ 64 chars.")
    max_frame_bytes: int = _s("MAX_FRAME_BYTES", 4 * MiB, "Largest WebSocket message, bytes (beyond: close 1009).",
                              min=1)
    max_fps: float = _s("MAX_FPS", 60.0, "Frames per second accepted per connection; excess is dropped.", min=0.1)
    max_connections: int = _s("MAX_CONNECTIONS", 64, "WebSocket connections per edge (beyond: close 1013).",
                              min=1)
    idle_timeout: float = _s("IDLE_TIMEOUT", 60.0, "Seconds without a message before a stream is closed.",
                             min=1)
    web_dir: str = _s("WEB_DIR", "", "Directory of the web demo served at `/` (empty = the `web/` folder "
                      "next to the packages).")
    ws_max_control_rate: float = _s("WS_MAX_CONTROL_RATE", 10.0, "WebSocket ping and pong frames accepted per "
                                    "second per connection (bursts of 5 s worth); beyond: close 1008 "
                                    "`too_many_frames`.", min=0.1)
    ws_max_fragments: int = _s("WS_MAX_FRAGMENTS", 256, "Most frames one WebSocket message may be split into "
                               "(the first and its continuation fragments); beyond: close 1008 `too_many_frames`.",
                               min=1)
    ws_max_unread: int = _s("WS_MAX_UNREAD", 256 * KiB, "Most of a WebSocket stream's output the edge holds "
                            "unread, bytes: the socket's kernel send buffer (Linux caps it at "
                            "`net.core.wmem_max`); past it the stream's results wait.", min=8 * KiB, max=64 * MiB)
    ws_unread_timeout: float = _s("WS_UNREAD_TIMEOUT", 10.0, "Seconds a WebSocket's output may wait past "
                                  "`WS_MAX_UNREAD` (its client not reading) before the connection is dropped "
                                  "(1008 `not_reading`).", min=0.1)
    max_connections_per_key: int = _s("MAX_CONNECTIONS_PER_KEY", 0, "WebSocket connections one API key may hold "
                                      "on an edge, so one tenant cannot take all of `MAX_CONNECTIONS` (beyond: close "
                                      "1013 `too_many_connections`); 0 = no cap of its own. Needs `AUTH_ENABLED`.",
                                      min=0)
    ws_allowed_origins: str = _s("WS_ALLOWED_ORIGINS", "", "Web origins (`https://app.example.com`, comma-separated; "
                                 "`*` = any) whose pages may open `/ws`, besides the edge's own (same host) and "
                                 "clients that send no `Origin` (not browsers); others: close 1008 "
                                 "`origin_not_allowed`.")

    # --- cameras (edge; docs/cameras.md) ---
    cameras: str = _s("CAMERAS", "", "Cameras this edge reads itself: `name=source` pairs, comma-separated, or "
                      "`@/path/file` (one pair a line). Sources: `rtsp://` (TCP), `rtsp+udp://`, `http(s)://` "
                      "(MJPEG), `file:///path` (looped), `/dev/videoN`. Names `[a-z0-9_-]{1,32}`.")
    camera_fps: float = _s("CAMERA_FPS", 10.0, "Frames per second a camera offers to inference; the source's "
                           "other frames are read (and H.264 decoded) but never converted or run.", min=0.1, max=120)
    camera_open_timeout: float = _s("CAMERA_OPEN_TIMEOUT", 10.0, "Seconds to open a camera (connect, handshake, "
                                    "first packets) before the attempt fails.", min=0.1, max=600)
    camera_read_timeout: float = _s("CAMERA_READ_TIMEOUT", 5.0, "Seconds without data from an open camera before "
                                    "it counts as down and is reopened.", min=0.1, max=600)
    camera_reconnect_min: float = _s("CAMERA_RECONNECT_MIN", 0.5, "First wait before reopening a camera that "
                                     "failed; doubled per failed attempt...", min=0.01, max=600)
    camera_reconnect_max: float = _s("CAMERA_RECONNECT_MAX", 4.0, "...up to this many seconds (each wait is "
                                     "drawn from [half, all] of it: jitter).", min=0.01, max=3600)
    ha_discovery: bool = _s("HA_DISCOVERY", False, "Publish Home Assistant MQTT discovery for the cameras of "
                            "CAMERAS (sensors fingers/hands/gesture, a device trigger per gesture); needs "
                            "MQTT_URL, MQTT_PAYLOAD=json and an EDGE_ID of `[a-zA-Z0-9_-]`.")
    ha_discovery_prefix: str = _s("HA_DISCOVERY_PREFIX", "homeassistant", "Home Assistant's discovery prefix.")

    # --- stream pipeline (edge; docs/architecture.md "The stream path") ---
    stream_pipeline: str = _s("STREAM_PIPELINE", "litert",
                              "The engine, for stills and stream frames: `litert` = the bundle's models run with "
                              "LiteRT, one hand pipeline per worker shared by stills (palm detector → "
                              "landmarks) and streams (tracking-aware scheduling, motion gating); `mediapipe` = "
                              "the fallback, MediaPipe Tasks (IMAGE mode for stills, a VIDEO landmarker per "
                              "stream; the images carry it only when built with HGR_FALLBACK_ENGINE=true).",
                              choices=("litert", "mediapipe"))
    inference_runtime: str = _s("INFERENCE_RUNTIME", "auto",
                                "litert: what runs the hand models (`STREAM_PIPELINE=litert`): `litert` = LiteRT "
                                "(XNNPACK, fp32); `openvino` = OpenVINO's CPU plugin (needs the `openvino` extra: "
                                "`pip install 'hgr[openvino]'`, images built with HGR_OPENVINO=true); `auto` = "
                                "OpenVINO where the precision chosen is bf16, else LiteRT.",
                                choices=("auto", "litert", "openvino"))
    inference_precision: str = _s("INFERENCE_PRECISION", "auto",
                                  "litert: the hand models' number format: `fp32`; `bf16` = bfloat16 with the "
                                  "layers at both ends kept fp32 (OpenVINO only; 1.9-2.2x faster per model where the "
                                  "CPU has avx512_bf16 or amx_bf16, docs/accuracy.md); `auto` = bf16 where the CPU "
                                  "has those instructions and OpenVINO is installed, else fp32. Each worker checks "
                                  "a lower precision at start-up against fp32 on the shipped check photos and "
                                  "runs fp32 if any count differs (logged, in `/status`, "
                                  "`hgr_inference_fallback_workers`).",
                                  choices=("auto", "fp32", "bf16"))
    detect_interval_ms: float = _s("DETECT_INTERVAL_MS", 200.0,
                                   "litert: while a stream tracks some but fewer than its `num_hands` hands, the "
                                   "palm detector looks for more this often (a lost track or no tracked hand: "
                                   "at once).", min=0, max=60_000)
    detect_interval_frames: int = _s("DETECT_INTERVAL_FRAMES", 5,
                                     "...and no more often than every this many frames of the stream (a saturated "
                                     "edge serves each stream fewer frames per second).", min=1, max=10_000)
    motion_gate: bool = _s("MOTION_GATE", True, "litert: a stream tracking no hand whose frame has not changed "
                           "since its previous frame reuses the empty result (no model runs); a stream tracking "
                           "some hands looks for another only when the frame changed outside them.")
    motion_threshold: float = _s("MOTION_THRESHOLD", 16.0,
                                 "Grey levels a pixel of the 64×48 motion thumbnail must change by between "
                                 "frames to count as motion (camera noise, drift and JPEG: ≤ 7; a small hand "
                                 "appearing: ≥ 34).",
                                 min=0, max=255)
    motion_max_skip_ms: float = _s("MOTION_MAX_SKIP_MS", 1000.0,
                                   "A gated stream is still looked at fully, and a stream tracking fewer than "
                                   "`num_hands` hands searched for another, at least this often.", min=0,
                                   max=60_000)
    reduced_decode_min_side: int = _s("REDUCED_DECODE_MIN_SIDE", 360,
                                      "litert: a stream's JPEG frame is decoded at 1/2, 1/4 or 1/8 scale while its "
                                      "shorter side stays ≥ this many px (1920×1080 → 960×540; 640×480 as sent); "
                                      "0 = always full size. Stills are always decoded in full.", min=0,
                                      max=16_384)

    # --- auth ---
    auth_enabled: bool = _s("AUTH_ENABLED", False, "Require an API key on detection (REST and WebSocket); the "
                            "fleet routes and the full `/status` always need one.")
    api_keys: str = _s("API_KEYS", "", "`name:key[:requests/window_s][:scopes]`, comma-separated, or `@/path/file`; "
                       "scopes `detect`, `fleet:read`, `fleet:admin` joined by `+` (none = `detect+fleet:read`).",
                       secret=True)

    # --- rate limiting (hub) ---
    rate_limit_enabled: bool = _s("RATE_LIMIT_ENABLED", True, "Global per-key/per-IP rate limit on REST.")
    rate_limit_requests: int = _s("RATE_LIMIT_REQUESTS", 200, "Requests (images) allowed per window.", min=1)
    rate_limit_window: float = _s("RATE_LIMIT_WINDOW", 60.0, "Window length, seconds.", min=0.001)
    rate_limit_burst: int = _s("RATE_LIMIT_BURST", 0, "Extra requests allowed at once above the steady rate.",
                               min=0)
    rate_limit_shadow: bool = _s("RATE_LIMIT_SHADOW", False, "Count and report, but never block (rollout).")
    rate_limit_fail: str = _s("RATE_LIMIT_FAIL", "open", "When Redis is unreachable: allow or refuse.",
                              choices=("open", "closed"))
    fleet_quota_frames: int = _s("FLEET_QUOTA_FRAMES", 0,
                                 "Edge frames per key per RATE_LIMIT_WINDOW before the hub throttles it "
                                 "fleet-wide; 0 = no fleet quota.", min=0)

    # --- cache and redis (hub) ---
    cache_enabled: bool = _s("CACHE_ENABLED", True, "Cache REST results by image hash + model + options.")
    cache_ttl: int = _s("CACHE_TTL", 3600, "Seconds a cached result lives.", min=1)
    cache_max_entries: int = _s("CACHE_MAX_ENTRIES", 10_000, "Entries kept by the in-process cache.", min=1)
    redis_enabled: bool = _s("REDIS_ENABLED", False, "Use Redis for cache, rate limits and fleet state.")
    redis_host: str = _s("REDIS_HOST", "127.0.0.1", "Redis host (when REDIS_URL is unset).")
    redis_port: int = _s("REDIS_PORT", 6379, "Redis port (when REDIS_URL is unset).", min=1, max=65535)
    redis_db: int = _s("REDIS_DB", 0, "Redis database number (when REDIS_URL is unset).", min=0)
    redis_url: str = _s("REDIS_URL", "", "`redis://[:password@]host:port/db`, `redis+sentinel://host:port,…/"
                        "master[/db]` or `redis+cluster://host:port,…`; setting it enables Redis.",
                        secret=True)
    redis_cluster: bool = _s("REDIS_CLUSTER", False, "REDIS_URL (or REDIS_HOST:REDIS_PORT) is a node of a Redis "
                             "Cluster; same as a `redis+cluster://` URL.")
    redis_sentinels: str = _s("REDIS_SENTINELS", "", "`host:port,…` of Redis Sentinels to ask for the master "
                              "(when REDIS_URL is unset; enables Redis).")
    redis_sentinel_master: str = _s("REDIS_SENTINEL_MASTER", "mymaster",
                                    "The master's name in the Sentinels (with REDIS_SENTINELS).")
    redis_sentinel_password: str = _s("REDIS_SENTINEL_PASSWORD", "", "Password of the Sentinels themselves (their "
                                      "`requirepass`); the master's password goes in REDIS_URL.", secret=True)
    redis_key_prefix: str = _s("REDIS_KEY_PREFIX", "hgr:", "Prefix of every Redis key this service writes.")
    rate_limit_redis_url: str = _s("RATE_LIMIT_REDIS_URL", "", "A Redis of the rate limits' own (their buckets and "
                                   "the failed-key pacing), in REDIS_URL's forms (a cluster: `redis+cluster://`; its "
                                   "Sentinels' password: REDIS_SENTINEL_PASSWORD); run it with `maxmemory-policy "
                                   "noeviction`, so no bucket is ever evicted (docs/security.md, Redis). Empty = "
                                   "the limits live in REDIS_URL's Redis (in the process without one).", secret=True)

    # --- mqtt ---
    mqtt_url: str = _s("MQTT_URL", "", "`mqtt://user:pass@host:port` or `mqtts://…`; unset = no broker.",
                       secret=True)
    mqtt_topic_prefix: str = _s("MQTT_TOPIC_PREFIX", "hgr/v1", "Prefix of every topic.")
    mqtt_keepalive: int = _s("MQTT_KEEPALIVE", 30, "MQTT keepalive, seconds (the Will fires after ~1.5×).",
                             min=5, max=65535)
    mqtt_payload: str = _s("MQTT_PAYLOAD", "json", "Payload encoding.", choices=("json", "msgpack"))
    mqtt_max_payload: int = _s("MQTT_MAX_PAYLOAD", 256 * 1024, "Fleet messages larger than this many bytes are "
                               "refused unread (hub ingest, edge control).", min=1024, max=256 * 1024 * 1024)
    mqtt_share_group: str = _s("MQTT_SHARE_GROUP", "hgr-hub", "Hub shared-subscription group.")
    mqtt_outbox_size: int = _s("MQTT_OUTBOX_SIZE", 1000, "Messages kept while the broker is away.", min=1)
    mqtt_outbox_settle: float = _s("MQTT_OUTBOX_SETTLE", 3.0, "Seconds an edge waits after a reconnect before "
                                   "flushing its outbox, so the hubs have resubscribed (Mosquitto 2.0 does not "
                                   "restore shared subscriptions after a restart).", min=0, max=60)
    mqtt_client_id: str = _s("MQTT_CLIENT_ID", "", "MQTT client id (default: `hgr-edge-<EDGE_ID>`, or "
                             "`hgr-hub-<hostname>-<PORT>` for a hub: stable, so a restart resumes its session).")
    mqtt_session_expiry: int = _s("MQTT_SESSION_EXPIRY", 60, "Seconds the broker keeps a hub's session (its "
                                  "subscriptions and queued messages) while it is away; 0 = clean sessions.",
                                  min=0, max=2**32 - 1)
    mqtt_results: bool = _s("MQTT_RESULTS", False, "Publish every frame's result (QoS 0) on `…/results`.")
    mqtt_ca_file: str = _s("MQTT_CA_FILE", "", "CA bundle for `mqtts://` (empty = system store).")
    mqtt_client_cert: str = _s("MQTT_CLIENT_CERT", "", "Client certificate for mutual TLS.")
    mqtt_client_key: str = _s("MQTT_CLIENT_KEY", "", "Client key for mutual TLS.", secret=True)
    metrics_interval: float = _s("METRICS_INTERVAL", 10.0, "Seconds between an edge's metrics messages.",
                                 min=0.1)
    edge_stale_after: float = _s("EDGE_STALE_AFTER", 45.0,
                                 "Hub marks an edge offline after this many silent seconds.", min=1)
    edge_forget_after: float = _s("EDGE_FORGET_AFTER", 86_400.0,
                                  "Hub forgets an edge offline this many seconds (and drops its metric "
                                  "series); 0 = never. An edge heard from for less than EDGE_STALE_AFTER is "
                                  "forgotten once silent for EDGE_STALE_AFTER.", min=0)
    fleet_gauges_interval: float = _s("FLEET_GAUGES_INTERVAL", 5.0,
                                      "Seconds between refreshes of the hub's per-edge Prometheus gauges (each "
                                      "reads the whole fleet: ~0.1 ms of hub CPU per edge; they are at least 1 ms "
                                      "per edge apart, 20 s for 20 000 edges: a tenth of the hub at most).",
                                      min=0.1)
    event_debounce_ms: float = _s("EVENT_DEBOUNCE_MS", 300.0,
                                  "A count/gesture must hold this long before an event is published.", min=0)

    # --- trust boundaries (docs/security.md) ---
    auth_failure_limit: int = _s("AUTH_FAILURE_LIMIT", 20, "Unknown API keys a client (IP) may present per "
                                 "AUTH_FAILURE_WINDOW before the hub answers 429 `too_many_auth_failures`; a "
                                 "valid key is never refused by it.", min=1)
    auth_failure_window: float = _s("AUTH_FAILURE_WINDOW", 60.0, "Window of AUTH_FAILURE_LIMIT, seconds.",
                                    min=0.001)
    fleet_edge_max_fps: float = _s("FLEET_EDGE_MAX_FPS", 0.0, "Hub: the most frames per second one edge can "
                                   "process; an edge's `frames_by_key` beyond it (over time, with 2 × "
                                   "METRICS_INTERVAL of burst) is clamped. 0 = MAX_FPS × MAX_CONNECTIONS.", min=0)
    fleet_max_keys_per_edge: int = _s("FLEET_MAX_KEYS_PER_EDGE", 64, "Hub: key names one edge may report per quota "
                                      "window (RATE_LIMIT_WINDOW); more are dropped and counted.", min=1,
                                      max=100_000)
    fleet_max_edges: int = _s("FLEET_MAX_EDGES", 20_000, "Hub: edges the fleet tracks; past it the messages of "
                              "an edge id it does not know are dropped and counted (its known edges go on) "
                              "until edges are forgotten (EDGE_FORGET_AFTER).", min=1)

    # --- derived helpers (not settings) ---
    def resolved_workers(self) -> int:
        return self.workers or (os.cpu_count() or 1)

    def resolved_edge_id(self) -> str:
        return self.edge_id or validate_edge_id(socket.gethostname()[:64], "hostname")

    def resolved_redis_url(self) -> str | None:
        """One URL for every topology (common.redis_url parses it): REDIS_CLUSTER and REDIS_SENTINELS
        become the `redis+cluster://` and `redis+sentinel://` forms."""
        if self.redis_url:
            if self.redis_cluster and self.redis_url.startswith(("redis://", "rediss://")):
                scheme, rest = self.redis_url.split("://", 1)
                return f"{scheme}+cluster://{rest}"
            return self.redis_url
        if self.redis_sentinels:
            return f"redis+sentinel://{self.redis_sentinels}/{self.redis_sentinel_master}/{self.redis_db}"
        if self.redis_enabled:
            if self.redis_cluster:
                return f"redis+cluster://{self.redis_host}:{self.redis_port}"
            return f"redis://{self.redis_host}:{self.redis_port}/{self.redis_db}"
        return None

    def public(self) -> dict[str, Any]:
        """Settings safe to show (secrets masked)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.metadata["env"]] = "***" if f.metadata["secret"] and value else value
        return out


def validate_edge_id(value: str, where: str = "EDGE_ID") -> str:
    """An edge id becomes one MQTT topic level: no wildcards, no separators, bounded."""
    if not valid_edge_id(value):
        raise ConfigError(f"{where}={value!r} is not a valid edge id: 1-64 printable characters, "
                          f"no spaces and none of '+', '#', '/'")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse(f: dataclasses.Field[Any], raw: str, name: str | None = None) -> Any:
    env, kind = name or f.metadata["env"], f.type
    raw = raw.strip()
    if kind == "bool":
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{env}={raw!r}: expected a boolean (true/false, 1/0, yes/no, on/off)")
    if kind in ("int", "float"):
        try:
            value: Any = int(raw) if kind == "int" else float(raw)
        except ValueError:
            raise ConfigError(f"{env}={raw!r}: expected {'an integer' if kind == 'int' else 'a number'}") from None
        if not math.isfinite(value):  # NaN passes every bound check; infinity is no real setting either
            raise ConfigError(f"{env}={raw!r}: expected a finite number")
        lo, hi = f.metadata["min"], f.metadata["max"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = " and ".join(b for b in (lo is not None and f"≥ {lo}", hi is not None and f"≤ {hi}") if b)
            raise ConfigError(f"{env}={raw!r}: must be {bounds}")
        return value
    choices = f.metadata["choices"]
    if choices:
        low = raw.lower()
        if low not in choices:
            raise ConfigError(f"{env}={raw!r}: expected one of {', '.join(choices)}")
        return low
    return raw


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env",
                  **overrides: Any) -> Settings:
    """Build Settings from ``environ`` (default ``os.environ``) over an optional ``.env`` file.

    Real environment variables win over the file, as with docker/compose. ``overrides`` take field
    names and are applied last (used by tests and the CLI's flags). Every problem is found before
    raising: one ConfigError names them all (``read_settings``).
    """
    report = read_settings(environ, env_file, **overrides)
    if report.errors:
        raise ConfigError(problems_message(report.errors))
    return report.settings


@dataclass(frozen=True)
class SettingsReport:
    """What ``read_settings`` found. ``settings`` holds every value that parsed and the default of each
    that did not (``invalid`` names those fields), so later checks can look at everything; run nothing
    with it unless ``errors`` is empty. ``warnings`` are problems start-up survives."""

    settings: Settings
    errors: list[str]
    warnings: list[str]
    invalid: frozenset[str] = frozenset()


def problems_message(errors: list[str]) -> str:
    """One problem as itself; several as a count and one indented line each."""
    if len(errors) == 1:
        return errors[0]
    return f"{len(errors)} configuration problems:\n" + "\n".join(f"  {e}" for e in errors)


def read_settings(environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env",
                  **overrides: Any) -> SettingsReport:
    """Parse every setting and run every check on the values, collecting all problems instead of stopping
    at the first (``load_settings`` raises on them; ``hgr.startup`` adds the checks that look
    beyond the values: files, ports, keys, the model)."""
    source: dict[str, str] = {}
    if env_file and Path(env_file).is_file():
        source.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    source.update(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    errors: list[str] = []
    warnings: list[str] = []
    invalid: set[str] = set()
    for f in dataclasses.fields(Settings):
        env = f.metadata["env"]
        name, raw = lookup(env, source)
        if raw is None:
            continue
        if name == env and not env.startswith(PREFIX) and SERVICE_LINK.fullmatch(raw.strip()):
            warnings.append(f"{env}={raw.strip()!r} is a Kubernetes service link (`<SERVICE>_PORT=tcp://host:port`), "
                            f"not a setting: ignored ({env} keeps its default; set {PREFIX}{env} to choose it)")
            continue
        try:
            values[f.name] = _parse(f, raw, name)
        except ConfigError as exc:
            errors.append(exc.message)
            invalid.add(f.name)
    values.update(overrides)
    settings = Settings(**values)
    if settings.edge_id:
        try:
            validate_edge_id(settings.edge_id)
        except ConfigError as exc:
            errors.append(exc.message)
    if settings.api_keys.startswith("@") and not Path(settings.api_keys[1:]).is_file():
        errors.append(f"API_KEYS={settings.api_keys!r}: file not found")
    try:
        parse_cameras(settings.cameras)
    except CameraSpecError as exc:
        errors.append(f"CAMERAS: {exc}")
    if settings.ha_discovery:
        if settings.mqtt_payload != "json":
            errors.append("HA_DISCOVERY=true needs MQTT_PAYLOAD=json (Home Assistant reads the edge's status)")
        if not re.fullmatch(r"[a-zA-Z0-9_-]+", settings.resolved_edge_id()):
            errors.append(f"HA_DISCOVERY=true needs an edge id of letters, digits, '_' and '-' (it is Home "
                          f"Assistant's discovery node id); set EDGE_ID (now {settings.resolved_edge_id()!r})")
    if not re.fullmatch(r"[^+#\s]+", settings.ha_discovery_prefix):
        errors.append("HA_DISCOVERY_PREFIX: a topic prefix without spaces, '+' or '#'")
    if settings.camera_reconnect_min > settings.camera_reconnect_max:
        errors.append("CAMERA_RECONNECT_MIN must not exceed CAMERA_RECONNECT_MAX")
    if settings.auth_enabled and not settings.api_keys:
        errors.append("AUTH_ENABLED=true needs API_KEYS (`name:key`, comma-separated, or `@/path/file`)")
    if settings.mqtt_url and not settings.mqtt_url.startswith(("mqtt://", "mqtts://")):
        errors.append("MQTT_URL: expected mqtt://[user:pass@]host[:port] or mqtts://…")
    if settings.redis_cluster and (settings.redis_sentinels
                                   or settings.redis_url.startswith(("unix://",) + SENTINEL_SCHEMES)):
        errors.append("REDIS_CLUSTER=true needs a redis:// URL or REDIS_HOST:REDIS_PORT of a cluster node "
                      "(a cluster is neither behind Sentinels nor on a unix socket)")
    redis_url = settings.resolved_redis_url()
    if redis_url:
        try:
            parse_redis_url(redis_url)
        except ValueError as exc:
            variable = "REDIS_URL" if settings.redis_url else "REDIS_SENTINELS" if settings.redis_sentinels \
                else "REDIS_HOST"
            errors.append(f"{variable}: {exc}")
    if settings.rate_limit_redis_url:
        try:
            parse_redis_url(settings.rate_limit_redis_url)
        except ValueError as exc:
            errors.append(f"RATE_LIMIT_REDIS_URL: {exc}")
    return SettingsReport(settings, errors, warnings, frozenset(invalid))


# Every setting is also read as HGR_<name>, and that name wins: orchestrators inject generic names
# (Kubernetes: `REDIS_PORT=tcp://10.0.0.5:6379` for a Service named `redis`). Names that already
# start with HGR_ have one form only.
PREFIX = "HGR_"
# Kubernetes' service-link form (an IPv6 cluster's in brackets); in an unprefixed variable it is ignored
# with a warning.
SERVICE_LINK = re.compile(r"(?:tcp|udp|sctp)://(?:\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+):\d+")


PREFIX_NOTE = (
    f"Every variable is also read with an `{PREFIX}` prefix (`{PREFIX}PORT`, `{PREFIX}REDIS_PORT`, …), and the "
    f"prefixed name wins; names that already start with `{PREFIX}` have no second form. Use the prefixed names "
    "where an orchestrator injects generic ones (Kubernetes' service links: `REDIS_PORT=tcp://10.0.0.5:6379` for a "
    "Service named `redis`). A plain variable holding such a link (`tcp://host:port`) is ignored with a warning "
    "(logged at start-up, listed by `hgr config --check`).")


def lookup(env: str, source: Mapping[str, str]) -> tuple[str, str | None]:
    """``(name, raw value)`` of setting ``env`` in ``source``: ``HGR_<env>`` when set, else ``env``."""
    if not env.startswith(PREFIX) and PREFIX + env in source:
        return PREFIX + env, source[PREFIX + env]
    return env, source.get(env)


def settings_table() -> str:
    """The README's configuration table, generated so it cannot drift from the code (with the sentence on
    ``HGR_`` names above it)."""
    rows = [PREFIX_NOTE, "",
            "| Variable | Default | Accepted | Meaning |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(Settings):
        m = f.metadata
        default = f.default
        if isinstance(default, bool):
            default = str(default).lower()
        accepted = ", ".join(m["choices"]) if m["choices"] else {
            "bool": "true/false", "int": "integer", "float": "number", "str": "text"}[str(f.type)]
        if m["min"] is not None or m["max"] is not None:
            accepted += f" [{m['min'] if m['min'] is not None else ''}..{m['max'] if m['max'] is not None else ''}]"
        rows.append(f"| `{m['env']}` | `{default}` | {accepted} | {m['help']} |")
    return "\n".join(rows)
