"""What every ``hgr bench`` section gets. Each section is one ``async def run(ctx: BenchContext) -> dict``
registered in ``hgr.loadtest.bench.SECTIONS``; its report is ``ctx.results[name]``, which later sections
read (the ``edge`` and ``rest`` ratios are against ``raw``)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any

from hgr.common.config import Settings


@dataclass
class BenchContext:
    """The options, the settings, the frames, and earlier sections' results."""

    args: argparse.Namespace
    settings: Settings
    frames: list[bytes]
    results: dict[str, Any] = field(default_factory=dict)

    def log(self, message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)
