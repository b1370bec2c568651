"""Every Prometheus metric the project exports, defined once.

Edge and hub share one registry (the all-in-one runs both in one process); the ``service`` label
(``edge`` | ``hub``) tells them apart. Labels carry only bounded values: enums, route templates,
status codes, and edge ids (bounded by the fleet size). Never a key, an IP or a stream id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

# No `*_created` series: a timestamp per counter and histogram child (77 of 559 samples on a busy hub) that
# no dashboard or alert reads; `process_start_time_seconds` (the process collector's) says when it began.
_disable_created: Callable[[], None] = disable_created_metrics  # unannotated in some prometheus_client releases
_disable_created()

# Milliseconds matter here: inference is 3-15 ms, plumbing well under 1 ms.
FAST = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.030, 0.050, 0.075, 0.1, 0.2,
        0.5, 1.0, 2.5)
HTTP = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- seed names (inference and batching; used by edge and hub) ---
INFERENCE_TOTAL = Counter("ml_inference_total", "Images run through the model.", ["service", "model", "status"])
INFERENCE_DURATION = Histogram("ml_inference_duration_seconds", "Model time per image.", ["service", "model"],
                               buckets=FAST)
BATCH_SIZE = Histogram("batch_processing_size", "Frames per dispatched batch.", ["service"],
                       buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64))
BATCH_DURATION = Histogram("batch_processing_duration_seconds", "Wall time to process one batch.",
                           ["service"], buckets=FAST)
ACTIVE_REQUESTS = Gauge("active_requests", "Requests or frames being processed now.", ["service"])
MODEL_LOADED = Gauge("model_loaded", "1 when the model is loaded and workers are up.", ["service", "model"])
ERRORS = Counter("hand_gesture_errors_total", "Errors returned to clients, by code.", ["service", "code"])

# --- worker pool ---
WORKERS_ALIVE = Gauge("hgr_workers_alive", "Inference worker processes running.", ["service"])
WORKER_RESTARTS = Counter("hgr_worker_restarts_total", "Inference workers restarted after dying.", ["service"])
# INFERENCE_RUNTIME, INFERENCE_PRECISION: what each worker runs after its start-up check (inference.hands.check).
INFERENCE_WORKERS = Gauge("hgr_inference_workers", "Inference workers by what runs their hand models (after the "
                          "start-up check; a worker once per kind, for any model variant it has made).",
                          ["service", "runtime", "precision"])
INFERENCE_FALLBACK = Gauge("hgr_inference_fallback_workers", "Workers asked for a lower precision that run fp32 for "
                           "a model variant: its check found a count that differs from fp32's.", ["service"])

# --- edge: frames and websockets ---
FRAMES_RECEIVED = Counter("hgr_frames_received_total", "Frames received.", ["encoding"])
FRAMES_PROCESSED = Counter("hgr_frames_processed_total", "Frames answered with a result.")
FRAMES_DROPPED = Counter("hgr_frames_dropped_total", "Frames not processed, by reason.", ["reason"])
QUEUE_DELAY = Histogram("hgr_frame_queue_delay_seconds", "Arrival to start of inference.", buckets=FAST)
FRAME_LATENCY = Histogram("hgr_frame_latency_seconds", "Arrival at the edge to result sent.", buckets=FAST)
WS_CONNECTIONS = Gauge("hgr_websocket_connections", "Open WebSocket streams.")
WS_CLOSED = Counter("hgr_websocket_closed_total", "WebSocket streams closed, by close code.", ["code"])
GESTURES = Counter("hgr_gestures_total", "Hands seen, by gesture.", ["gesture"])
# STREAM_PIPELINE=litert: frames the motion gate answered without the model, palm-detector runs.
FRAMES_GATED = Counter("hgr_frames_gated_total", "Stream frames answered by the motion gate (no model ran).")
DETECTOR_RUNS = Counter("hgr_palm_detector_runs_total", "Stream frames on which the palm detector ran.")

# --- edge: cameras it reads itself (CAMERAS; labels: only the configured names) ---
CAMERA_UP = Gauge("hgr_camera_up", "1 while a camera is open and delivering frames.", ["camera"])
CAMERA_FRAMES_READ = Counter("hgr_camera_frames_read_total", "Frames read from a camera (decoded where H.264).",
                             ["camera"])
CAMERA_FRAMES_PROCESSED = Counter("hgr_camera_frames_processed_total", "A camera's frames answered with a result.",
                                  ["camera"])
CAMERA_FRAMES_DROPPED = Counter("hgr_camera_frames_dropped_total", "A camera's frames read but never run "
                                "(above CAMERA_FPS, or replaced by a newer one while waiting).", ["camera"])
CAMERA_RECONNECTS = Counter("hgr_camera_reconnects_total", "Attempts to reopen a camera after it failed.",
                            ["camera"])
CAMERA_LAST_FRAME_AGE = Gauge("hgr_camera_last_frame_age_seconds", "Seconds since a camera's last frame "
                              "(-1: none yet).", ["camera"])

# --- edge: fleet reporting ---
LIBRARY_PATCH_ACTIVE = Gauge("hgr_library_patch_active", "1 when a patch on a library's internals is in use, 0 when "
                             "the installed release lacks them and the stock path runs (common.internals).",
                             ["patch"])
MQTT_CONNECTED = Gauge("hgr_mqtt_connected", "1 while connected to the broker.", ["service"])
MQTT_PUBLISHED = Counter("hgr_mqtt_published_total", "Messages handed to the broker, by kind.", ["kind"])
MQTT_OUTBOX = Gauge("hgr_mqtt_outbox_messages", "Messages waiting for the broker.")
MQTT_OUTBOX_DROPPED = Counter("hgr_mqtt_outbox_dropped_total", "Messages dropped from a full outbox.", ["kind"])
MQTT_CAMERA_LINKS = Gauge("hgr_mqtt_camera_links", "The cameras' availability connections (edge/availability.py), "
                          "by state: connected, or connecting (the broker away or refusing them).", ["state"])

# --- hub: HTTP, cache, rate limits, redis ---
# The deployment guide's names (before: http_requests_total / http_request_duration_seconds, not exported
# any more: one name per series; monitoring/ reads these).
HTTP_REQUESTS = Counter("hand_gesture_requests_total", "HTTP requests.", ["service", "method", "route", "status"])
HTTP_DURATION = Histogram("hand_gesture_request_duration_seconds", "HTTP request time.",
                          ["service", "method", "route", "status"], buckets=HTTP)
CACHE = Counter("hgr_cache_requests_total", "Result cache look-ups.", ["result"])  # hit | miss | error
RATE_LIMIT = Counter("hgr_rate_limit_decisions_total", "Rate-limit decisions.", ["decision"])
# decision: allowed | limited | near_limit | shadow_limited | error_allowed | error_refused | full_refused
AUTH_FAILURES = Counter("hgr_auth_failures_total", "Requests refused for their API key, by reason.", ["reason"])
# reason: missing | invalid | scope | limited (an unknown key past AUTH_FAILURE_LIMIT)
REDIS_UP = Gauge("hgr_redis_up", "1 when the last Redis call succeeded.", ["redis"])
# redis: main (REDIS_URL: cache, fleet, and the limits unless they have their own) | rate_limit (RATE_LIMIT_REDIS_URL)

# --- hub: fleet ---
FLEET_EDGES = Gauge("hgr_fleet_edges", "Known edges by status.", ["status"])
FLEET_MESSAGES = Counter("hgr_fleet_messages_total", "Fleet MQTT messages ingested, by kind.", ["kind"])
FLEET_GAPS = Counter("hgr_fleet_sequence_gaps_total", "Metrics messages missing (sequence gaps).")
FLEET_EDGE_FPS = Gauge("hgr_fleet_edge_fps", "Frames per second processed by an edge.", ["edge_id"])
FLEET_EDGE_LATENCY = Gauge("hgr_fleet_edge_latency_p95_seconds", "An edge's p95 frame latency.", ["edge_id"])
FLEET_EDGE_DROPS = Gauge("hgr_fleet_edge_dropped_frames", "Frames an edge dropped (its counter).", ["edge_id"])
FLEET_EDGE_CONNECTIONS = Gauge("hgr_fleet_edge_connections", "Open streams on an edge.", ["edge_id"])
FLEET_EDGE_UP = Gauge("hgr_fleet_edge_up", "1 when an edge is online.", ["edge_id"])
FLEET_CLAIMS_LIMITED = Counter("hgr_fleet_claims_limited_total", "What the hub cut from edges' reports, by "
                               "what.", ["what"])
# what: frames (frames_by_key over the edge's ceiling) | key_names (over FLEET_MAX_KEYS_PER_EDGE)
#       | status (an edge's queued statuses beyond its last few, coalesced) | status_edges (too many edges queued)
#       | edges (a message of an edge id past FLEET_MAX_EDGES)
FLEET_KEY_FRAMES = Gauge("hgr_fleet_key_frames", "Frames per API key name in the current window.", ["key"])


def render() -> tuple[bytes, str]:
    """(body, content type) for a /metrics response."""
    return generate_latest(), CONTENT_TYPE_LATEST


async def render_off_loop() -> tuple[bytes, str]:
    """``render()`` in a worker thread, for the servers' ``/metrics``: a hub with FLEET_MAX_EDGES edges has
    100 000 per-edge series, whose rendering (~0.5 s) held every request and message on the loop."""
    return await asyncio.to_thread(render)
