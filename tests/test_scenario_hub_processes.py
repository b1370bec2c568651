"""`hgr hub` as real processes: start-up, and three hubs sharing one rate limit through one Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hub_support import hub_processes
from tests.support import free_port, wait_ready

KEY = "team-key-0123456789"


@pytest.fixture
def hubs(private_redis: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> Iterator[list[tuple[str, Path]]]:
    """Three `hgr hub` processes (one worker each) on one private Redis; yields (url, log file)."""
    redis_url, _ = private_redis
    env = {**os.environ, "WORKERS": "1", "REDIS_URL": redis_url, "RATE_LIMIT_REQUESTS": "30",
           "RATE_LIMIT_WINDOW": "60", "AUTH_ENABLED": "true", "API_KEYS": f"team:{KEY}", "LOG_FORMAT": "json",
           "MQTT_URL": ""}
    with hub_processes(env, 3, tmp_path) as hubs:
        yield hubs


@pytest.mark.slow
def test_three_hub_processes_never_exceed_the_shared_limit(hubs: list[tuple[str, Path]]) -> None:
    async def hammer() -> tuple[Counter[int], float]:
        # Charged, then refused as an empty image: every request costs one unit and no inference.
        body = {"image_base64": ""}
        async with httpx.AsyncClient(timeout=60, headers={"X-API-Key": KEY}) as client:
            async def one(url: str) -> int:
                return (await client.post(f"{url}/detect-fingers", json=body)).status_code
            start = time.time()
            statuses = await asyncio.gather(*(one(url) for _ in range(40) for url, _ in hubs))
            return Counter(statuses), time.time() - start

    counts, elapsed = asyncio.run(hammer())
    accepted = counts[400]
    assert set(counts) <= {400, 429}, counts
    assert 30 <= accepted <= 30 + elapsed * 30 / 60 + 1, (counts, elapsed)
    for url, log in hubs:
        status = httpx.get(f"{url}/status", headers={"X-API-Key": KEY}).json()
        assert status["rate_limit"]["store"] == "redis" and status["redis"]["up"] is True
        assert KEY not in log.read_text()


def test_hgr_hub_prints_its_url_and_serves_the_schema(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "WORKERS": "1", "MQTT_URL": "", "REDIS_URL": ""}
    proc = subprocess.Popen([sys.executable, "-m", "hgr", "hub", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc, 240, interval=0.25)
        assert httpx.get(f"{url}/openapi.json").json()["openapi"].startswith("3.")
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    # LOG_FORMAT=json (the default): the URL line is a log record like every other line
    said = [json.loads(line)["msg"] for line in out.splitlines()]
    assert any(f"http://127.0.0.1:{port}/" in msg for msg in said)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught, so -15 is a clean exit too
    assert proc.returncode in (0, -15)
