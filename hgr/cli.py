"""The ``hgr`` command: one entry point, one subcommand per job.

Subcommands that start services import their package lazily, so ``hgr detect`` does not pay for
starlette or paho, and a broken optional part cannot stop the others.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from hgr.common.config import load_settings, problems_message, settings_table
from hgr.common.errors import HgrError

# name -> ("module:function", help). Each function takes the parsed argparse namespace's remaining
# argv (a list of strings) and returns an exit code.
SERVICES = {
    "edge": ("hgr.servers:edge_main", "start an edge node (WebSocket frames in, results out)"),
    "hub": ("hgr.servers:hub_main", "start the hub (REST API, fleet aggregation)"),
    "up": ("hgr.allinone:main", "start hub + edge + web demo on one port, no broker or Redis needed"),
    "bench": ("hgr.loadtest.bench:main", "measure the edge and hub against the raw model; prints JSON"),
}


def _detect(args: argparse.Namespace) -> int:
    from hgr.common.engine import Detector
    from hgr.common.model import model_paths

    settings = load_settings()
    detector = Detector(settings, model_paths(settings))
    opts = replace(detector.defaults, num_hands=args.num_hands or settings.num_hands, mirrored=args.mirrored)
    failed = 0
    try:
        for file in args.images:
            try:
                result = detector.detect_bytes(Path(file).read_bytes(), opts)
                out = {"file": file, **result}
            except HgrError as exc:
                out, failed = {"file": file, "error": exc.to_dict()}, failed + 1
            except OSError as exc:
                error = {"code": "unreadable", "message": exc.strerror or str(exc)}
                out, failed = {"file": file, "error": error}, failed + 1
            if args.json:
                print(json.dumps(out, separators=(",", ":")), flush=True)
            elif "error" in out:
                print(f"{file}: error {out['error']['code']}: {out['error']['message']}")
            else:
                desc = (", ".join(f"{h['handedness']} {h['fingers']} ({h['gesture']})" for h in out["hands"])
                        or "no hand")
                print(f"{file}: {out['total_fingers']} finger(s) — {desc}")
    finally:
        detector.close()
    return 1 if failed else 0


def _model(args: argparse.Namespace) -> int:
    from hgr.common.model import resolve_model

    settings = load_settings()
    info = resolve_model(settings, allow_network=args.action == "fetch")
    print(json.dumps({"path": info.path, "size": info.size, "sha256": info.sha256, "variant": info.variant,
                      "source": info.source, "model_id": info.model_id}, indent=2))
    return 0


def _config(args: argparse.Namespace) -> int:
    if args.check:  # the very checks `hgr up|hub|edge` make before they start (hgr.common.startup)
        from hgr.common.startup import check_startup

        report = check_startup(args.service)
        for warning in report.warnings:
            print(f"hgr: warning: {warning}", file=sys.stderr)
        if report.errors:
            print(f"hgr: {problems_message(report.errors)}", file=sys.stderr)
            return 2
        print("configuration OK" + (f" ({len(report.warnings)} warning(s) above)" if report.warnings else ""))
    elif args.show:  # the values in effect (environment over .env over defaults), secrets masked
        print(json.dumps(load_settings().public(), indent=2, default=str))
    else:
        print(settings_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hgr", description="Real-time hand gesture / finger counting service.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("detect", help="count fingers in image files")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.add_argument("--mirrored", action="store_true", help="images are mirrored selfies")
    p.add_argument("--num-hands", type=int, choices=range(1, 5), default=None)
    p.set_defaults(func=_detect)

    p = sub.add_parser("model", help="locate, fetch or describe the model bundle")
    p.add_argument("action", choices=("info", "fetch"))
    p.set_defaults(func=_model)

    p = sub.add_parser("config", help="print the configuration table, --check the environment, or --show "
                                      "the values in effect (secrets masked)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true")
    group.add_argument("--show", action="store_true")
    p.add_argument("--service", choices=("up", "hub", "edge"), default="up")
    p.set_defaults(func=_config)

    for name, (_, help_text) in SERVICES.items():
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.set_defaults(func=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        if args.func is None:
            module, func = SERVICES[args.command][0].split(":")
            return int(getattr(importlib.import_module(module), func)(rest) or 0)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        code: int = args.func(args)
        return code
    except HgrError as exc:
        print(f"hgr: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
