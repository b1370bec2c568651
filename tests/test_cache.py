"""Result caches: the in-process LRU+TTL, the Redis store, the key, and failures degrading to misses."""

from __future__ import annotations

import dataclasses
import subprocess
import uuid
from pathlib import Path
from typing import Any, cast

import pytest

from hgr.common.config import Settings, load_settings
from hgr.common.contracts import DetectionResult
from hgr.common.inference.hands import runtime
from hgr.common.inference.pool import InferencePool
from hgr.common.options import DetectOptions
from hgr.hub.app import Hub
from hgr.hub.cache import (
    ANSWER_SETTINGS,
    KEYED_ELSEWHERE,
    NOT_ANSWER_SETTINGS,
    MemoryCache,
    RedisCache,
    answer_id,
    cache_key,
    keyed_inference,
)
from hgr.hub.redis_conn import RedisConn
from tests.support import eventually, redis_argv

# A minimal result (its timing has total_ms only): the caches store and return it untouched.
RESULT = cast(DetectionResult, {"hands": [], "total_fingers": 0, "image_size": [10, 10], "timing": {"total_ms": 1.0}})


def test_key_depends_on_bytes_model_and_options() -> None:
    opts = DetectOptions(num_hands=2)
    base = cache_key("p:", b"img", "model-a", opts)
    assert base.startswith("p:cache:") and len(base.split(":")[2]) == 64
    assert cache_key("p:", b"img", "model-a", opts) == base
    assert cache_key("p:", b"img2", "model-a", opts) != base
    assert cache_key("p:", b"img", "model-b", opts) != base
    assert cache_key("p:", b"img", "model-a", DetectOptions(num_hands=1)) != base
    assert cache_key("p:", b"img", "model-a", DetectOptions(num_hands=2, mirrored=True)) != base


def test_answer_id_changes_with_every_setting_that_changes_a_still() -> None:
    def answer(model_id: str, env: dict[str, str]) -> str:
        return answer_id(model_id, load_settings(env, env_file=None), runtime.REFERENCE)

    base = answer("model-a", {})
    assert base.startswith("model-a+")
    assert answer("model-b", {}) != base
    assert answer("model-a", {"EXPOSURE_RETRY": "false"}) != base
    assert answer("model-a", {"INFER_MAX_SIDE": "1024"}) != base
    assert answer("model-a", {"MIN_HAND_DETECTION_CONFIDENCE": "0.99"}) != base
    assert answer("model-a", {"MIN_HAND_PRESENCE_CONFIDENCE": "0.99"}) != base
    assert answer("model-a", {"RATE_LIMIT_REQUESTS": "7"}) == base
    assert answer_id("model-a", load_settings({}, env_file=None), runtime.Choice("openvino", "bf16")) != base


def test_hubs_on_a_bf16_and_an_avx2_cpu_key_their_answers_apart(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    # Two hubs with the same settings (INFERENCE_PRECISION=auto) on a bf16 and an AVX2-only CPU, sharing one
    # cache, run different number formats: their answers must not be served to each other. Each hub resolves
    # `auto` once, when it is made, as its workers do.
    bundle = tmp_path / "hand_landmarker.task"
    bundle.write_bytes(b"the model id is a digest of these bytes")
    auto = load_settings({}, env_file=None, workers=1)
    pool = InferencePool(auto, {"full": str(bundle)}, service="hub", workers=1)  # never started
    monkeypatch.setattr(runtime, "openvino_installed", lambda: True)
    hubs = {}
    for cpu, flags in (("avx2", {"avx2"}), ("bf16", {"avx2", "avx512_bf16"})):
        monkeypatch.setattr(runtime, "cpu_flags", lambda flags=flags: frozenset(flags))
        hubs[cpu] = Hub(auto, pool)
    assert (hubs["avx2"].inference, hubs["bf16"].inference) == (runtime.REFERENCE, runtime.Choice("openvino", "bf16"))
    keys = {cpu: hub.detection.model_ids["full"] for cpu, hub in hubs.items()}
    assert keys["avx2"] != keys["bf16"]
    assert keys["avx2"] == answer_id(hubs["avx2"].model_ids["full"], auto, runtime.REFERENCE)


def test_the_mediapipe_engine_keys_no_resolved_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    # MediaPipe Tasks answers whatever INFERENCE_* say, and nothing resolves them: not even when OpenVINO is asked
    # for and absent (hgr.startup checks them for the LiteRT engine only).
    monkeypatch.setattr(runtime, "openvino_installed", lambda: False)
    assert keyed_inference(load_settings({"STREAM_PIPELINE": "mediapipe", "INFERENCE_RUNTIME": "openvino"},
                                         env_file=None)) is None
    with pytest.raises(ValueError, match="INFERENCE_RUNTIME=openvino"):
        keyed_inference(load_settings({"INFERENCE_RUNTIME": "openvino"}, env_file=None))


def _another_value(f: dataclasses.Field[Any], value: Any) -> Any:
    """A different valid value of the setting ``f`` (currently ``value``)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        lo, hi = f.metadata["min"], f.metadata["max"]
        for candidate in (value + 1, value - 1, (value + (lo or 0)) / 2):
            other = type(value)(candidate)
            if other != value and (lo is None or other >= lo) and (hi is None or other <= hi):
                return other
        raise AssertionError(f"no other value for {f.name}")
    return f"{value}x"


def test_every_setting_is_in_the_cache_key_or_declared_not_to_change_an_answer() -> None:
    """Row 11 of issue 20: a setting added to Settings must be classified here, in hub/cache.py; every
    setting in the key changes the key."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    tables = [set(ANSWER_SETTINGS), set(KEYED_ELSEWHERE), set(NOT_ANSWER_SETTINGS)]
    unclassified = set(fields) - set().union(*tables)
    assert not unclassified, f"classify these settings in hub/cache.py (do they change a still's answer?): " \
                             f"{sorted(unclassified)}"
    assert not set().union(*tables) - set(fields), "hub/cache.py names settings that do not exist"
    assert sum(len(t) for t in tables) == len(fields), "a setting is in two of hub/cache.py's tables"
    base_settings = load_settings({}, env_file=None)
    base = answer_id("model-a", base_settings, runtime.REFERENCE)
    for name in ANSWER_SETTINGS:
        other = _another_value(fields[name], getattr(base_settings, name))
        assert other != getattr(base_settings, name)
        changed = dataclasses.replace(base_settings, **{name: other})
        assert answer_id("model-a", changed, runtime.REFERENCE) != base, name
    for name in {*KEYED_ELSEWHERE, *NOT_ANSWER_SETTINGS}:
        other = _another_value(fields[name], getattr(base_settings, name))
        assert answer_id("model-a", dataclasses.replace(base_settings, **{name: other}), runtime.REFERENCE) == base, \
            name


async def test_memory_cache_is_bounded_lru() -> None:
    cache = MemoryCache(max_entries=2, ttl_s=60)
    await cache.set("a", RESULT)
    await cache.set("b", RESULT)
    assert await cache.get("a") == RESULT  # a is now the most recent
    await cache.set("c", RESULT)  # evicts b
    assert await cache.get("b") is None
    assert await cache.get("a") == RESULT and await cache.get("c") == RESULT
    status = cache.status()
    assert status["entries"] == 2 and status["hits"] == 3 and status["misses"] == 1 and status["hit_rate"] == 0.75


async def test_memory_cache_expires_after_ttl() -> None:
    cache = MemoryCache(max_entries=10, ttl_s=0.05)
    await cache.set("a", RESULT)
    assert await cache.get("a") == RESULT
    async def expired() -> bool:
        return await cache.get("a") is None

    await eventually(expired, 10, "the entry to expire", interval=0.02)
    assert cache.status()["entries"] == 0


async def test_redis_cache_round_trip_with_ttl(redis_url: str) -> None:
    conn = RedisConn(redis_url)
    await conn.start()
    key = f"hgr-test:{uuid.uuid4().hex}:cache:x"
    try:
        cache = RedisCache(conn, ttl_s=30)
        assert await cache.get(key) is None
        await cache.set(key, RESULT)
        assert await cache.get(key) == RESULT
        assert 0 < await conn.client.ttl(key) <= 30
        assert cache.status()["hits"] == 1 and cache.status()["misses"] == 1
    finally:
        await conn.client.delete(key)
        await conn.close()


async def test_redis_cache_errors_are_misses_and_it_reconnects(
        private_redis: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, proc = private_redis
    conn = RedisConn(url, ping_interval_s=0.1)
    await conn.start()
    cache = RedisCache(conn, ttl_s=30)
    try:
        await cache.set("k", RESULT)
        assert await cache.get("k") == RESULT
        proc.kill()
        proc.wait()
        assert await cache.get("k") is None  # an error, reported as a miss
        await cache.set("k", RESULT)  # swallowed
        assert cache.status()["errors"] >= 1 and not conn.up
        port = url.rsplit(":", 1)[1].split("/")[0]
        restarted = subprocess.Popen(redis_argv(port), stdout=subprocess.DEVNULL)  # noqa: ASYNC220 - returns at once
        try:
            await eventually(lambda: conn.up, 30, "the background ping to reconnect", interval=0.05)
            await cache.set("k", RESULT)
            assert await cache.get("k") == RESULT
        finally:
            restarted.kill()
            restarted.wait()
    finally:
        await conn.close()
