"""common/readiness.py: the one /ready shape of the edge and the hub."""

from __future__ import annotations

from hgr.common.readiness import readiness


def test_ready_node_answers_200_with_the_common_fields() -> None:
    status, body = readiness(ready=True, workers=2, models=["lite", "full"], redis=True)
    assert status == 200
    assert body == {"status": "ready", "workers": 2, "models": ["full", "lite"], "redis": True}


def test_no_worker_or_stopping_is_503_with_the_error_body() -> None:
    status, body = readiness(ready=False, workers=0, models=["full"])
    assert status == 503 and body["status"] == "not_ready" and body["redis"] is None
    assert body["error"]["code"] == "not_ready" and "worker" in body["error"]["message"]
    status, body = readiness(ready=True, workers=1, models=["full"], stopping=True)
    assert status == 503 and body["error"]["message"] == "the node is stopping"


def test_redis_down_does_not_make_a_node_unready() -> None:
    status, body = readiness(ready=True, workers=1, models=["full"], redis=False)
    assert status == 200 and body["redis"] is False
