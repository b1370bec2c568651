"""The ``hgr`` command: one entry point, one subcommand per job.

Subcommands that start services import their package lazily, so ``hgr detect`` does not pay for
starlette or paho, and a broken optional part cannot stop the others.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hgr.common.config import load_settings, problems_message, settings_table
from hgr.common.errors import ConfigError, HgrError

# name -> ("module:function", help). Each function takes the parsed argparse namespace's remaining
# argv (a list of strings) and returns an exit code.
SERVICES = {
    "edge": ("hgr.servers:edge_main", "start an edge node (WebSocket frames in, results out)"),
    "hub": ("hgr.servers:hub_main", "start the hub (REST API, fleet aggregation)"),
    "up": ("hgr.allinone:main", "start hub + edge + web demo on one port, no broker or Redis needed"),
    "bench": ("hgr.loadtest.bench:main", "measure the edge and hub against the raw model; prints JSON"),
}


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def detect_inputs(names: Sequence[str]) -> Iterator[tuple[str, bytes | OSError]]:
    """``(label, bytes or the error reading them)`` for each ``hgr detect`` argument, in order: ``-`` is
    stdin; a directory stands for its image files (by suffix, any case), recursively, sorted by path; any
    other name is a file, whatever its suffix."""
    for name in names:
        if name == "-":
            yield "-", sys.stdin.buffer.read()
            continue
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                yield name, OSError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this directory")
            for file in files:
                yield from _read(str(file))
        else:
            yield from _read(name)


def _read(name: str) -> Iterator[tuple[str, bytes | OSError]]:
    try:
        yield name, Path(name).read_bytes()
    except OSError as exc:
        yield name, exc


def _detect(args: argparse.Namespace) -> int:
    from hgr.common.inference.engine import Detector
    from hgr.common.inference.model import model_paths

    overrides = {}
    if args.model is not None:
        if not Path(args.model).is_file():
            raise ConfigError(f"--model {args.model!r}: no such file")
        overrides = {"model_path": args.model, "model_lite_path": ""}
    settings = load_settings(**overrides)
    detector = Detector(settings, model_paths(settings))
    opts = replace(detector.defaults, num_hands=args.num_hands or settings.num_hands, mirrored=args.mirrored)
    failed = 0
    try:
        for file, data in detect_inputs(args.images):
            out: dict[str, Any]
            try:
                if isinstance(data, OSError):
                    raise data
                result = detector.detect_bytes(data, opts)
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
    from hgr.common.inference.model import resolve_model

    settings = load_settings()
    fetch = args.action == "fetch"  # a progress bar only for a person watching a terminal
    info = resolve_model(settings, allow_network=fetch, progress=fetch and sys.stderr.isatty())
    print(json.dumps({"path": info.path, "size": info.size, "sha256": info.sha256, "variant": info.variant,
                      "source": info.source, "model_id": info.model_id}, indent=2))
    return 0


def _config(args: argparse.Namespace) -> int:
    if args.check:  # the very checks `hgr up|hub|edge` make before they start (hgr.startup)
        from hgr.startup import check_startup

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
    parser.add_argument("--version", action="version", version=f"hgr {version()}",
                        help="print the version of hgr and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("detect", help="count fingers in image files",
                       description="Count fingers in images: files, directories (their image files, "
                                   "recursively, sorted) or - for one image on stdin.")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help=f"an image file, a directory ({', '.join(IMAGE_SUFFIXES)} files in it and below), "
                        "or - (stdin)")
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.add_argument("--mirrored", action="store_true", help="images are mirrored selfies")
    p.add_argument("--num-hands", type=int, choices=range(1, 5), default=None,
                   help="most hands per image (default: NUM_HANDS)")
    p.add_argument("--model", metavar="PATH", default=None,
                   help="a hand_landmarker.task bundle to use (default: HGR_MODEL_PATH, then the cache, ...)")
    p.set_defaults(func=_detect)

    p = sub.add_parser("model", help="locate, fetch or describe the model bundle",
                       description="Describe the model bundle in use, or fetch it into the cache.")
    p.add_argument("action", choices=("info", "fetch"),
                   help="info: path, size, SHA-256 and variant of the bundle on disk (never downloads); fetch: "
                        "the same, after downloading or building it into HGR_MODEL_CACHE_DIR if it is not there")
    p.set_defaults(func=_model)

    p = sub.add_parser("config", help="print the configuration table, --check the environment, or --show "
                                      "the values in effect (secrets masked)",
                       description="Without an option: the table of every setting (as in the README).")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true",
                       help="run every start-up check of --service (values, files, ports, keys, model); list all "
                            "problems and exit 2, or print `configuration OK`")
    group.add_argument("--show", action="store_true",
                       help="print the values in effect (environment over .env over defaults) as JSON, secrets "
                            "masked")
    p.add_argument("--service", choices=("up", "hub", "edge"), default="up",
                   help="the service whose start-up --check runs (its port differs: PORT or EDGE_PORT)")
    p.set_defaults(func=_config)

    for name, (_, help_text) in SERVICES.items():  # each parses its own options: `hgr NAME --help`
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.set_defaults(func=None)
    return parser


def version() -> str:
    try:
        return importlib.metadata.version("hgr")
    except importlib.metadata.PackageNotFoundError:  # a checkout that was never installed
        return "unknown (not installed)"


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
        sys.stdout.flush()  # here, where a closed pipe is caught, rather than at exit
        return code
    except HgrError as exc:
        print(f"hgr: {exc.message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `hgr config | head -1`: the reader has gone, which is no error of ours. Nothing more can be written,
        # not even at exit, so stdout becomes /dev/null; the status is the shell's for a death by SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
