"""Hubs sharing one Redis share its result cache, and only answers they would give themselves (issue 20,
row 11): a hub whose thresholds differ never serves another's answer as ``cached``."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from hgr.common.inference.pool import InferencePool
from tests.hub_support import b64, hub_settings, serve_hub

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_hubs_with_different_thresholds_do_not_serve_each_others_answers(
        hub_pool: InferencePool, redis_url: str, hand_photos: list[tuple[Path, int]]) -> None:
    photo = next(p for p, fingers in hand_photos if fingers >= 1).read_bytes()
    prefix = f"hgr-test-{uuid.uuid4().hex}:"
    common = {"redis_url": redis_url, "redis_key_prefix": prefix, "rate_limit_requests": 1000}
    lenient = hub_settings(**common)
    strict = hub_settings(**common, min_hand_detection_confidence=0.99, min_hand_presence_confidence=0.99)
    try:
        async with (serve_hub(lenient, hub_pool) as (url_a, _), serve_hub(lenient, hub_pool) as (url_b, _),
                    serve_hub(strict, hub_pool) as (url_c, _), httpx.AsyncClient(timeout=120) as client):
            body = {"image_base64": b64(photo)}
            first = (await client.post(f"{url_a}/detect-fingers", json=body)).json()
            assert first["cached"] is False
            # the same settings on another hub: the shared entry is used (Redis is really shared) ...
            assert (await client.post(f"{url_b}/detect-fingers", json=body)).json()["cached"] is True
            # ... but not by a hub whose thresholds would give another answer
            strict_answer = (await client.post(f"{url_c}/detect-fingers", json=body)).json()
            assert strict_answer["cached"] is False
    finally:
        client_r = aioredis.from_url(redis_url)
        keys = [k async for k in client_r.scan_iter(f"{prefix}*")]
        if keys:
            await client_r.delete(*keys)
        await client_r.aclose()
