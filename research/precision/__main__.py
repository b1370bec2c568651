"""``python -m research.precision``: the command line of the precision study (see research/precision/__init__.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import research.precision
from research.paths import DEFAULT_PHOTOS
from research.precision.report import table
from research.precision.run import run
from research.precision.variants import VARIANTS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.precision",
                                     description=research.precision.__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_PHOTOS, help="photos with labels.csv")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--clips", type=int, default=0, metavar="N", help="camera clips from N photos (0: none)")
    parser.add_argument("--clip-variants", default="ov_f32,ov_bf16,ov_bf16_ends2,ov_bf16_ends8",
                        help="candidates that use one of these also run the clips")
    parser.add_argument("--hold", type=int, default=30, help="frames per clip")
    parser.add_argument("--calibration-seed", type=int, default=0,
                        help="which half of each session calibrates the static int8 candidates")
    parser.add_argument("--seconds", type=float, default=20.0, help="timing per model")
    parser.add_argument("--markdown", type=Path, metavar="REPORT", help="print a saved report as a table, run nothing")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(table(json.loads(args.markdown.read_text())))
        return 0
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    report = run(args.folder, variants, clip_photos=args.clips, clip_candidates=args.clip_variants.split(","),
                 hold=args.hold, seconds=args.seconds, log=lambda m: print(m, file=sys.stderr, flush=True),
                 calibration_seed=args.calibration_seed)
    sys.stdout.write(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
