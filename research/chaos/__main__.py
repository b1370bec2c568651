"""``python -m research.chaos``: the command line of the chaos run (see research/chaos/__init__.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from research.chaos.modes import acceptance, soak
from research.paths import DEFAULT_PHOTOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.chaos",
                                     description="Chaos and soak: real processes, good and hostile traffic, faults")
    parser.add_argument("--mode", choices=("soak", "acceptance"), default="soak")
    parser.add_argument("--duration", type=float, default=300.0, help="soak: seconds (5 to 3600)")
    parser.add_argument("--phase", type=float, default=30.0, help="acceptance: seconds per throughput phase")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    duration = min(3600.0, max(5.0, args.duration))
    report = asyncio.run(soak(duration, args.photos) if args.mode == "soak"
                         else acceptance(min(600.0, max(5.0, args.phase)), args.photos))
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text if args.mode == "acceptance" else json.dumps({k: v for k, v in report.items() if k != "samples"},
                                                             indent=1))
    return 0 if report.get("verdict", {}).get("passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())
