"""Three processes hammering one API key through one Redis never get more than the limit (+ burst)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

# Each process: the real RateLimiter on the real Redis, as fast as it can from a common start time.
HAMMER = r"""
import asyncio, json, sys, time
from hgr.common.config import load_settings
from hgr.hub.ratelimit import RateLimited, RateLimiter
from hgr.hub.redis_conn import RedisConn

async def main(url, start_at, attempts):
    settings = load_settings({}, env_file=None, redis_url=url, rate_limit_requests=50,
                             rate_limit_window=60.0, rate_limit_burst=5, redis_key_prefix="mp:")
    conn = RedisConn(url)
    await conn.start()
    limiter = RateLimiter(settings, conn)
    while time.time() < start_at:
        await asyncio.sleep(0.001)
    allowed = limited = 0
    first = time.time()
    for i in range(attempts):
        try:
            await limiter.check("key:shared", 2 if i % 5 == 0 else 1)
            allowed += 2 if i % 5 == 0 else 1
        except RateLimited:
            limited += 1
    print(json.dumps({"allowed": allowed, "limited": limited, "first": first, "last": time.time()}))
    await conn.close()

asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
"""


@pytest.mark.slow
def test_three_processes_share_one_budget(private_redis: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, _ = private_redis
    start_at = time.time() + 4.0  # time for three interpreters to import and connect on a busy machine
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, url, str(start_at), "300"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        reports.append(json.loads(out))
    accepted = sum(r["allowed"] for r in reports)
    elapsed = max(r["last"] for r in reports) - min(r["first"] for r in reports)
    capacity, rate = 50 + 5, 50 / 60.0
    assert accepted <= capacity + elapsed * rate + 1, (accepted, elapsed)
    assert accepted >= capacity - 1  # the budget was actually reachable (a cost-2 call may not fit the last unit)
    assert sum(r["limited"] for r in reports) > 0
