"""REST load against a running hub (the seed's interface). Prints one JSON object.

    python -m research.rest_load --url http://127.0.0.1:8000 --requests 1000 --concurrency 50 \
        --type single|batch|upload [--api-key K] [--batch-size 8] [--allow-cache]

Throughput (requests/s and images/s), client-side latency percentiles (ms), status counts and error codes
(``hgr.loadtest.rest.run_rest``, which ``hgr bench --sections rest`` runs against a fresh hub). Every image is
made unique (a JPEG comment with a nonce) unless ``--allow-cache``, so the numbers measure the model path,
not the result cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from hgr.loadtest.rest import KINDS, run_rest
from research.paths import DEFAULT_PHOTOS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m research.rest_load", description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--type", dest="kind", choices=KINDS, default="single")
    p.add_argument("--api-key", default=os.environ.get("HGR_API_KEY"))
    p.add_argument("--batch-size", type=int, default=8, help="images per batch/upload request")
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    p.add_argument("--allow-cache", action="store_true", help="send the photos as they are (cache hits)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = asyncio.run(run_rest(args.url, args.requests, args.concurrency, args.kind, args.photos, args.api_key,
                                  batch_size=args.batch_size, unique=not args.allow_cache))
    print(json.dumps(report, indent=2))
    return 0 if report["status"].get("200") == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
