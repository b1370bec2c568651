"""common/lifespan.py: the pool first, the parts in order; on stop the parts in reverse and the pool last,
and a part that fails to start stops the ones already started."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette

from hgr.common.lifespan import lifespan


class Recorder:
    def __init__(self, name: str, log: list[str], fail_start: bool = False) -> None:
        self.name, self.log, self.fail_start = name, log, fail_start

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")

    async def close(self) -> None:  # the pool's stop
        self.log.append(f"close {self.name}")


async def test_order_on_start_and_reverse_on_stop() -> None:
    log: list[str] = []
    run = lifespan(Recorder("pool", log), Recorder("edge", log), Recorder("hub", log))  # type: ignore[arg-type]
    async with run(Starlette()):
        assert log == ["start pool", "start edge", "start hub"]
    assert log[3:] == ["stop hub", "stop edge", "close pool"]


async def test_a_part_failing_to_start_stops_the_started_ones_and_the_pool() -> None:
    log: list[str] = []
    run = lifespan(Recorder("pool", log), Recorder("edge", log),  # type: ignore[arg-type]
                   Recorder("hub", log, fail_start=True), Recorder("never", log))
    with pytest.raises(RuntimeError, match="hub cannot start"):
        async with run(Starlette()):
            pass
    assert log == ["start pool", "start edge", "stop edge", "close pool"]
