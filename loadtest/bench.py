"""``hgr bench``: the service against the raw model, in one run, as JSON.

Sections (``--sections``, comma-separated, run in this order), each an ``async def run(ctx) -> dict`` in
``SECTIONS``, its report under its name:

- ``raw`` (``hgr.loadtest.raw``): MediaPipe Tasks called directly (VIDEO mode, one stream per process, the same
  frames): one process alone (the per-frame time a single stream is compared with), then WORKERS processes
  together (the throughput ceiling); with ``rest``, also in IMAGE mode (the stills' ceiling) and the service's
  own LiteRT still engine called directly (``image_litert``).
- ``edge`` (``hgr.loadtest.edge_streams``): an edge started in a subprocess (or ``--url`` of a running one),
  fed by 1, 4 and 16 simulated 30 fps cameras (``--streams``) and then one unthrottled stream; frames/s, the
  ratio to raw, latency percentiles measured by the client (send → result) and drop counts.
- ``camera`` (``hgr.loadtest.camera``): realistic camera clips (sensor noise, drift, JPEG per frame; empty,
  one-hand and two-hand scenes) as closed-loop streams, the edge against raw MediaPipe VIDEO mode on the same
  clips, per scene kind (``--camera-mix``, ``--edge-env``).
- ``rest`` (``hgr.loadtest.rest``): a hub in a subprocess, single and batch requests.
- ``file_cameras`` (``hgr.loadtest.file_cameras``): the edge's CPU per processed frame with 8 looped H.264 file
  cameras and 8 WebSocket streams, against 16 WebSocket streams alone, on the same clips at the same pace, in
  alternating turns; the cameras' decoding measured apart.

Frames come from ``--photos`` (default: the 36 labelled photos the package ships), so a plain install runs
every section. The studies behind docs/benchmarks.md's other numbers live outside the package, in a
checkout's ``research/`` folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hgr.common.config import load_settings
from hgr.loadtest import camera, edge_streams, file_cameras, raw, rest, ws_stream
from hgr.loadtest.clips import SAMPLE_PHOTOS
from hgr.loadtest.context import BenchContext

Section = Callable[[BenchContext], Awaitable[dict[str, Any]]]
SECTIONS: dict[str, Section] = {"raw": raw.run, "edge": edge_streams.run, "camera": camera.run, "rest": rest.run,
                                "file_cameras": file_cameras.run}


async def run(ctx: BenchContext) -> dict[str, Any]:
    for name in ctx.args.sections:
        started = time.perf_counter()
        ctx.results[name] = await SECTIONS[name](ctx)
        ctx.log(f"{name}: done in {time.perf_counter() - started:.1f} s")
    return ctx.results


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _sections(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown section(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(SECTIONS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hgr bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    p.add_argument("--streams", type=_int_list, default=[1, 4, 16], help="camera counts, e.g. 1,4,16")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second per camera (default 30)")
    p.add_argument("--photos", type=Path, default=SAMPLE_PHOTOS,
                   help="folder of JPEG photos (camera: with labels.csv); default: the package's 36 labelled photos")
    p.add_argument("--hold", type=int, default=15,
                   help="frames each photo stays in view, as in a real camera's video (default 15)")
    p.add_argument("--workers", type=int, default=0, help="inference processes (default WORKERS or cores)")
    p.add_argument("--sections", type=_sections, default=["raw", "edge"],
                   help=f"comma-separated, run in order: {', '.join(SECTIONS)} (default raw,edge)")
    p.add_argument("--url", default=None, help="bench a running edge (ws://host:port/ws) instead of starting one")
    camera.add_arguments(p)
    file_cameras.add_arguments(p)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    if args.workers:
        os.environ["WORKERS"] = str(args.workers)
    photos = ws_stream.load_frames(args.photos)
    # A camera's consecutive frames show the same scene, which is what VIDEO-mode tracking relies on;
    # a new photo every frame would make every frame a tracking failure (the worst case, not a camera).
    frames = [frame for frame in photos for _ in range(max(1, args.hold))]
    ctx = BenchContext(args, settings, frames)
    ctx.log(f"{len(photos)} photos from {args.photos}, each held for {args.hold} frames")
    results = asyncio.run(run(ctx))
    print(json.dumps(results, indent=2))
    return 0
