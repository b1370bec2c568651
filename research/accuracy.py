"""Finger-count accuracy of the real model + ``common.inference.fingers`` on the labelled photos.

    python -m research.accuracy            # summary table
    python -m research.accuracy --json     # the full report as JSON
    python -m research.accuracy --markdown # the generated part of docs/accuracy.md
    python -m research.accuracy --dump tests/fixtures/landmarks.json   # landmarks for unit tests

Runs ``common.inference.engine.Detector`` on stills with ``num_hands=2`` and the settings of
``load_settings()`` (``HGR_MODEL_PATH``; the engine is ``STREAM_PIPELINE``'s, LiteRT by default) over every
photo in ``<shared>/data/hands`` (labels.csv).

Scoring: a photo counts as *detected* when the model reports at least one hand. The photos show one
hand each, so when the model reports two, the one with the highest handedness score is scored (and
the photo is listed under ``two_hands``). Accuracy is over detected photos; detection rate is
reported separately. The naive baseline is the tutorial rule (tip above PIP in image y, thumb tip
beyond its IP joint in image x by handedness) on the same hands.

The hold-out check measures each hand once, then tunes the three thresholds by grid search on one
half of the photos (alternate files) and reports accuracy on the other half, next to the untuned
defaults; the sensitivity table shows accuracy as each threshold moves on its own.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hgr.common.inference.fingers import DEFAULT, Measurements, Thresholds, count_fingers, decide, measure
from research.paths import DEFAULT_PHOTOS

CLASSES = tuple(range(6))
# Grid for the hold-out tuning: wide ranges around each physical boundary.
GRID = {
    "finger_max_curl_deg": [60.0 + 5 * i for i in range(13)],  # 60..120
    "thumb_min_reach_out": [0.05 * i for i in range(11)],  # 0..0.5
    "pinch_max_gap": [0.2 + 0.1 * i for i in range(7)],  # 0.2..0.8
}


@dataclass(frozen=True)
class Photo:
    file: str
    label: int
    source: str  # owner/name of the source repository
    session: str  # recording session within the source (lighting/background conditions)
    source_path: str


def session_of(source_repo: str, source_path: str) -> str:
    """SubhiH names files ``<session>_picNNNNN.jpg``; EPSRC keeps sets in ``.../SetN/<count>/``."""
    name = source_path.rsplit("/", 1)[-1]
    if "Set" in source_path:
        return next(part for part in source_path.split("/") if part.startswith("Set"))
    return name.split("_", 1)[0] if "_" in name else "misc"


def load_photos(folder: Path) -> list[Photo]:
    with (folder / "labels.csv").open() as f:
        return [Photo(row["file"], int(row["fingers"]), row["source_repo"].split("/", 1)[1].split("@")[0],
                      session_of(row["source_repo"], row["source_path"]), row["source_path"])
                for row in csv.DictReader(f)]


def detect_all(folder: Path, photos: Sequence[Photo], *, engine: str | None = None) -> list[dict[str, Any]]:
    """Run the real model over every photo: [{photo fields..., "hands": [engine hand dicts], "retry", "image_size"}].

    ``engine``: a ``STREAM_PIPELINE`` value (``litert``, ``mediapipe``) instead of the setting's."""
    from hgr.common.config import load_settings
    from hgr.common.inference.engine import Detector
    from hgr.common.inference.model import model_paths
    from hgr.common.options import DetectOptions

    settings = load_settings()
    if engine is not None:
        settings = replace(settings, stream_pipeline=engine)
    detector = Detector(settings, model_paths(settings))
    opts = DetectOptions(num_hands=2, model=settings.model_variant)
    try:
        results = [(p, detector.detect_bytes((folder / p.file).read_bytes(), opts)) for p in photos]
        # "retry": the exposure bracket the hands were found on (EXPOSURE_RETRY), None for the photo as sent
        return [{**asdict(p), "hands": r["hands"], "retry": r.get("retry"), "image_size": r["image_size"]}
                for p, r in results]
    finally:
        detector.close()


def scored_hand(hands: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The hand a one-hand photo is scored on: the most confident one."""
    return max(hands, key=lambda h: h["score"]) if hands else None


def naive_count(hand: dict[str, Any]) -> int:
    """Tutorial baseline: a finger is up when its tip is above its PIP in the image; the thumb when its
    tip is further out than its IP joint (leftwards in the picture for a right hand facing the camera)."""
    lm = hand["landmarks"]
    n = sum(lm[tip][1] < lm[tip - 2][1] for tip in (8, 12, 16, 20))
    thumb_out = lm[4][0] < lm[3][0] if hand["handedness"] == "Right" else lm[4][0] > lm[3][0]
    return int(n) + int(thumb_out)


def evaluate(records: Sequence[dict[str, Any]], count: Callable[[dict[str, Any]], int]) -> dict[str, Any]:
    """Accuracy per class and overall, confusion matrix and misses, for one way of counting a hand."""
    per: dict[int, Counter[str]] = {c: Counter() for c in CLASSES}
    confusion = {c: {p: 0 for p in CLASSES} for c in CLASSES}
    misses = []
    for r in records:
        hand = scored_hand(r["hands"])
        per[r["label"]]["photos"] += 1
        if hand is None:
            continue
        predicted = count(hand)
        per[r["label"]]["detected"] += 1
        per[r["label"]]["correct"] += predicted == r["label"]
        confusion[r["label"]][predicted] += 1
        if predicted != r["label"]:
            misses.append({"file": r["file"], "label": r["label"], "predicted": predicted,
                           "source": r["source"], "session": r["session"], "source_path": r["source_path"],
                           "hands": len(r["hands"]), "score": hand["score"]})
    detected = sum(c["detected"] for c in per.values())
    correct = sum(c["correct"] for c in per.values())
    return {
        "per_class": {str(c): {"photos": v["photos"], "detected": v["detected"],
                               "detection_rate": _ratio(v["detected"], v["photos"]), "correct": v["correct"],
                               "accuracy": _ratio(v["correct"], v["detected"])} for c, v in per.items()},
        "overall": {"photos": len(records), "detected": detected, "correct": correct,
                    "detection_rate": _ratio(detected, len(records)), "accuracy": _ratio(correct, detected),
                    "end_to_end": _ratio(correct, len(records))},
        "confusion": {str(c): {str(p): n for p, n in row.items()} for c, row in confusion.items()},
        "misses": misses,
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _measured(records: Sequence[dict[str, Any]]) -> list[tuple[int, Measurements]]:
    return [(r["label"], measure(h["world_landmarks"] or h["landmarks"]))
            for r in records if (h := scored_hand(r["hands"])) is not None]


def _accuracy(measured: Sequence[tuple[int, Measurements]], t: Thresholds) -> float:
    correct = sum(count_fingers(decide(m, t)) == label for label, m in measured)
    return round(correct / max(1, len(measured)), 4)


def holdout(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tune on alternate photos, report on the others (both ways round)."""
    ordered = sorted(records, key=lambda r: r["file"])
    halves = {"even": _measured(ordered[0::2]), "odd": _measured(ordered[1::2])}
    out = []
    for train, test in (("even", "odd"), ("odd", "even")):
        scored = [(_accuracy(halves[train], t), t) for values in itertools.product(*GRID.values())
                  if (t := Thresholds(**dict(zip(GRID, values))))]
        best_acc = max(acc for acc, _ in scored)
        # Several grid points tie at the top (a plateau); take the one closest to the physical defaults so
        # the choice is not arbitrary, and report how wide the plateau is.
        tied = [t for acc, t in scored if acc == best_acc]
        best = min(tied, key=_distance)
        out.append({"tuned_on": train, "tested_on": test, "tuned": asdict(best), "train_accuracy": best_acc,
                    "tied_at_best": f"{len(tied)}/{len(scored)}",
                    "test_accuracy": _accuracy(halves[test], best),
                    "default_test_accuracy": _accuracy(halves[test], DEFAULT),
                    "test_hands": len(halves[test])})
    return out


def _distance(t: Thresholds) -> float:
    return sum(abs(float(getattr(t, k)) - float(getattr(DEFAULT, k))) / (GRID[k][-1] - GRID[k][0]) for k in GRID)


def sensitivity(records: Sequence[dict[str, Any]]) -> dict[str, list[list[float]]]:
    """Accuracy on all detected hands as one threshold moves over its grid, the others at default."""
    measured = _measured(records)
    return {k: [[v, _accuracy(measured, replace(DEFAULT, **{k: v}))] for v in values]
            for k, values in GRID.items()}


def build_report(records: Sequence[dict[str, Any]], model: str, exposure_retry: bool = False,
                 engine: str = "litert") -> dict[str, Any]:
    def ours(hand: dict[str, Any]) -> int:
        return int(hand["fingers"])

    result = evaluate(records, ours)
    naive = evaluate(records, naive_count)
    sessions: dict[str, Counter[str]] = defaultdict(Counter)
    for r in records:
        key = f"{r['source']} {r['session']}"
        sessions[key]["photos"] += 1
        sessions[key]["detected"] += bool(r["hands"])
    return {
        "model": model,
        "engine": engine,
        "exposure_retry": exposure_retry,
        "scoring": "one hand per photo; if the model reports two, the highest-score hand is scored",
        "thresholds": asdict(DEFAULT),
        **result,
        "naive_baseline": {"overall": naive["overall"],
                           "per_class": {c: v["accuracy"] for c, v in naive["per_class"].items()}},
        "detection_by_session": {k: {"photos": v["photos"], "detected": v["detected"],
                                     "detection_rate": _ratio(v["detected"], v["photos"])}
                                 for k, v in sorted(sessions.items())},
        "two_hands": [r["file"] for r in records if len(r["hands"]) > 1],
        "undetected": [r["file"] for r in records if not r["hands"]],
        "retried": {r["file"]: r["retry"] for r in records if r.get("retry")},
        "holdout": holdout(records),
        "sensitivity": sensitivity(records),
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def render_markdown(report: dict[str, Any]) -> str:
    o, n = report["overall"], report["naive_baseline"]
    lines = [
        f"Model: `{report['model']}`, `STREAM_PIPELINE={report['engine']}`, "
        f"`EXPOSURE_RETRY={str(report['exposure_retry']).lower()}`. Thresholds: "
        + ", ".join(f"`{k}={v}`" for k, v in report["thresholds"].items()) + ".",
        "",
        (f"**Overall: {o['correct']}/{o['detected']} detected hands counted correctly "
        f"({_pct(o['accuracy'])})**; naive baseline {n['overall']['correct']}/{n['overall']['detected']} "
        f"({_pct(n['overall']['accuracy'])}). "
        f"Detected: {o['detected']}/{o['photos']} photos ({_pct(o['detection_rate'])}); "
        f"counted correctly end to end: {o['correct']}/{o['photos']} photos ({_pct(o['end_to_end'])})."),
        "",
        "| fingers | photos | detected | detection rate | correct | accuracy | naive baseline |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c, v in report["per_class"].items():
        lines.append(f"| {c} | {v['photos']} | {v['detected']} | {_pct(v['detection_rate'])} "
                     f"| {v['correct']} | {_pct(v['accuracy'])} | {_pct(n['per_class'][c])} |")
    lines += ["", "Confusion matrix (rows: label, columns: counted):", "",
              "| label \\ counted | " + " | ".join(map(str, CLASSES)) + " |",
              "| --- |" + " --- |" * len(CLASSES)]
    for c, row in report["confusion"].items():
        lines.append(f"| **{c}** | " + " | ".join(str(row[str(p)]) for p in CLASSES) + " |")
    lines += ["", "Detection by recording session:", "", "| source session | photos | detected | rate |",
              "| --- | --- | --- | --- |"]
    for k, v in report["detection_by_session"].items():
        lines.append(f"| {k} | {v['photos']} | {v['detected']} | {_pct(v['detection_rate'])} |")
    lines += ["", "Hold-out (thresholds tuned by grid search on one half, tested on the other):", "",
              ("| tuned on | tuned thresholds | grid points tied at best | train acc. | test acc. (tuned) "
              "| test acc. (defaults) | test hands |"),
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for h in report["holdout"]:
        tuned = ", ".join(f"{v:g}" for v in h["tuned"].values())
        lines.append(f"| {h['tuned_on']} | {tuned} | {h['tied_at_best']} | {_pct(h['train_accuracy'])} "
                     f"| {_pct(h['test_accuracy'])} "
                     f"| {_pct(h['default_test_accuracy'])} | {h['test_hands']} |")
    lines += ["", "Sensitivity (accuracy on all detected hands, one threshold moved, the others at default):",
              ""]
    for k, rows in report["sensitivity"].items():
        lines.append(f"- `{k}`: " + ", ".join(f"{v:g} → {_pct(a)}" for v, a in rows))
    lines += ["", f"Misses ({len(report['misses'])}):", "",
              "| file | label | counted | source session | source path |", "| --- | --- | --- | --- | --- |"]
    for m in report["misses"]:
        lines.append(f"| {m['file']} | {m['label']} | {m['predicted']} | {m['source']} {m['session']} "
                     f"| `{m['source_path']}` |")
    lines += ["", f"Two hands reported on: {', '.join(report['two_hands']) or 'none'}.",
              f"No hand found on ({len(report['undetected'])}): {', '.join(report['undetected'])}."]
    if report["exposure_retry"]:
        retried = report["retried"]
        lines.append(f"Hands found only on an exposure bracket ({len(retried)}): "
                     + (", ".join(f"{f} ({how})" for f, how in retried.items()) or "none") + ".")
    return "\n".join(lines) + "\n"


def render_summary(report: dict[str, Any]) -> str:
    o, n = report["overall"], report["naive_baseline"]["overall"]
    rows = [f"{'class':>5} {'photos':>6} {'detected':>8} {'accuracy':>8}"]
    for c, v in report["per_class"].items():
        rows.append(f"{c:>5} {v['photos']:>6} {v['detected']:>8} {_pct(v['accuracy']):>8}")
    rows.append(f"overall: {o['correct']}/{o['detected']} = {_pct(o['accuracy'])} "
                f"(naive {_pct(n['accuracy'])}), "
                f"detected {o['detected']}/{o['photos']}, end to end {_pct(o['end_to_end'])}; misses: "
                + ", ".join(f"{m['file']} {m['label']}→{m['predicted']}" for m in report["misses"]))
    return "\n".join(rows) + "\n"


def fixture(records: Sequence[dict[str, Any]]) -> str:
    """Compact JSON of every photo's hands (image landmarks 4 decimals, world 5: well below model noise)."""
    def hand(h: dict[str, Any]) -> dict[str, Any]:
        return {"handedness": h["handedness"], "score": round(h["score"], 3),
                "landmarks": [[round(v, 4) for v in p] for p in h["landmarks"]],
                "world_landmarks": [[round(v, 5) for v in p] for p in h["world_landmarks"]]}
    keys = ("file", "label", "source", "session")
    rows = [json.dumps({**{k: r[k] for k in keys}, "hands": [hand(h) for h in r["hands"]]},
                       separators=(",", ":")) for r in records]
    return '{"photos":[\n' + ",\n".join(rows) + "\n]}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.accuracy", description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_PHOTOS, help="photos with labels.csv")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the full report as JSON")
    out.add_argument("--markdown", action="store_true", help="print the generated part of docs/accuracy.md")
    out.add_argument("--dump", type=Path, help="write every photo's landmarks to this JSON fixture file")
    args = parser.parse_args(argv)

    from hgr.common.config import load_settings
    from hgr.common.inference.model import model_paths

    settings = load_settings()
    records = detect_all(args.folder, load_photos(args.folder))
    if args.dump:
        args.dump.write_text(fixture(records))
        print(f"wrote {len(records)} photos to {args.dump}", file=sys.stderr)
        return 0
    report = build_report(records, Path(model_paths(settings)[settings.model_variant]).name,
                          settings.exposure_retry, settings.stream_pipeline)
    if args.json:
        print(json.dumps(report, indent=1))
    elif args.markdown:
        print(render_markdown(report), end="")
    else:
        print(render_summary(report), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
