"""One run: every candidate built, held to the gate against fp32 and timed; the JSON report."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hgr.common.config import load_settings
from hgr.common.inference.hands.bundle import read_models
from hgr.common.inference.images import ImageLimits
from hgr.common.inference.model import model_paths
from research.accuracy import Photo, detect_all, load_photos
from research.engine_parity import compare
from research.precision.calibration import calibration_split
from research.precision.candidates import Built, build, sha256
from research.precision.gate import clip_counts, fixture_agreement, render_clips, shifted_photos, verdict
from research.precision.harness import Recorder, serving
from research.precision.timing import time_models
from research.precision.variants import MODELS, STATIC, Missing


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for package in ("ai-edge-litert", "ai-edge-quantizer", "openvino", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def candidates(variants: Sequence[str]) -> list[tuple[str, str]]:
    """(palm variant, landmark variant): each variant on one model, then on both."""
    out = []
    for v in variants:
        out += [(v, "fp32"), ("fp32", v), (v, v)]
    return out


def run(folder: Path, variants: Sequence[str], *, clip_photos: int, clip_candidates: Sequence[str],
        hold: int, seconds: float, log: Callable[[str], None], calibration_seed: int = 0) -> dict[str, Any]:
    # The IR files the OpenVINO candidates are read from, and the shifted photos: all read within this run.
    with tempfile.TemporaryDirectory(prefix="hgr-precision-") as tmp:
        return _run(Path(tmp), folder, variants, clip_photos=clip_photos, clip_candidates=clip_candidates,
                    hold=hold, seconds=seconds, log=log, calibration_seed=calibration_seed)


def _run(workdir: Path, folder: Path, variants: Sequence[str], *, clip_photos: int,
         clip_candidates: Sequence[str], hold: int, seconds: float, log: Callable[[str], None],
         calibration_seed: int) -> dict[str, Any]:
    settings = load_settings()
    paths = model_paths(settings)
    model_path = paths[settings.model_variant]  # HGR_MODEL_PATH, as the service resolves it
    bundle = Path(model_path)
    palm_bytes, landmark_bytes = read_models(bundle)
    source = {"palm": palm_bytes, "landmark": landmark_bytes}
    built: dict[tuple[str, str], Built] = {}
    models: dict[str, dict[str, Any]] = {m: {} for m in MODELS}

    def make(model: str, variant: str, calibration: Sequence[np.ndarray] = ()) -> None:
        try:
            b = built[model, variant] = build(variant, source[model], workdir, calibration)
            models[model][variant] = {"sha256": b.sha256, "note": b.note}
        except Missing as e:
            models[model][variant] = {"skipped": str(e)}
            log(f"{model} {variant}: skipped ({e})")

    for model in MODELS:
        for variant in ("fp32", *variants):
            if variant not in STATIC:
                make(model, variant)
    photos: list[Photo] = load_photos(folder)
    calibrating = calibration_split(photos, calibration_seed)
    held_out = [p.file for p in photos if p.file not in calibrating]
    calibration: dict[str, list[np.ndarray]] = {"palm": [], "landmark": []}
    if any(v in STATIC for v in variants):
        log(f"static int8: calibrating on {len(calibrating)} photos")
        inputs = (Built(lambda: Recorder(built["palm", "fp32"].make(), calibration["palm"], 10_000), ""),
                  Built(lambda: Recorder(built["landmark", "fp32"].make(), calibration["landmark"], 10_000), ""))
        with serving(*inputs):
            detect_all(folder, [p for p in photos if p.file in calibrating])
        for model in MODELS:
            for variant in variants:
                if variant in STATIC:
                    make(model, variant, calibration[model])
    log(f"fp32 on {len(photos)} photos")
    crops: dict[str, list[np.ndarray]] = {"palm": [], "landmark": []}
    recording = (Built(lambda: Recorder(built["palm", "fp32"].make(), crops["palm"]), ""),
                 Built(lambda: Recorder(built["landmark", "fp32"].make(), crops["landmark"]), ""))
    with serving(*recording):
        reference = detect_all(folder, photos)
    report: dict[str, Any] = {
        "photos": str(folder), "bundle": {"path": str(bundle), "sha256": sha256(bundle.read_bytes())},
        "versions": versions(), "models": models, "reference_fixtures": fixture_agreement(reference),
        "calibration": {"seed": calibration_seed, "photos": sorted(calibrating), "held_out": held_out,
                        "inputs": {m: len(v) for m, v in calibration.items()}},
        "candidates": {},
    }
    shifted = shifted_photos(ImageLimits.from_settings(settings), folder, photos, workdir / "shifted")
    fp32 = (built["palm", "fp32"], built["landmark", "fp32"])
    with serving(*fp32):
        control = detect_all(shifted, photos)
    report["control_shifted_1px"] = {"stills": compare(control, reference), "fixtures": fixture_agreement(control)}
    clips = render_clips(settings, model_path, folder, clip_photos, hold, seed=1) if clip_photos else []
    reference_clips = clip_counts(settings, paths, clips, fp32) if clips else []
    for palm, landmark in candidates(variants):
        if ("palm", palm) not in built or ("landmark", landmark) not in built:
            continue
        name = f"palm={palm} landmark={landmark}"
        log(name)
        pair = (built["palm", palm], built["landmark", landmark])
        with serving(*pair):
            records = detect_all(folder, photos)
        stills = compare(records, reference)
        clip_figures = None
        if clips and (palm in clip_candidates or landmark in clip_candidates):
            counts = clip_counts(settings, paths, clips, pair)
            frames = sum(len(c) for c in reference_clips)
            clip_figures = {"clips": len(clips), "frames": frames,
                            "same_frames": sum(a == b for ours, ref in zip(counts, reference_clips, strict=True)
                                               for a, b in zip(ours, ref, strict=True))}
        report["candidates"][name] = {"stills": stills, "fixtures": fixture_agreement(records),
                                      "clips": clip_figures, "gate": verdict(stills, clip_figures)}
        if palm in STATIC or landmark in STATIC:  # the same figures on the photos that did not calibrate it
            keep = set(held_out)
            ours, ref = ([r for r in rs if r["file"] in keep] for rs in (records, reference))
            held = compare(ours, ref)
            report["candidates"][name]["held_out"] = {"stills": held, "fixtures": fixture_agreement(ours),
                                                      "reference_fixtures": fixture_agreement(ref),
                                                      "gate": verdict(held, None)}
    log("timing")
    report["timing"] = {}
    for model in MODELS:
        runners = {v: built[model, v].make() for v in ("fp32", *variants) if (model, v) in built}
        report["timing"][model] = time_models(runners, crops[model], seconds)
    return report
