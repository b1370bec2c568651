"""The Markdown tables of docs/benchmarks.md from a saved camera bench report (``hgr.loadtest.camera``).

    hgr bench --sections camera > camera.json
    python -m research.camera_report camera.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hgr.loadtest import clips as camclips


def _ms(p: dict[str, Any], key: str) -> str:
    return "—" if p.get(key) is None else f"{p[key]:.1f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def _edge_name(edge: dict[str, Any]) -> str:
    return "edge " + (",".join(f"{k}={v}" for k, v in edge["env"].items()) or "(default)")


def markdown(report: dict[str, Any]) -> str:
    """The tables docs/benchmarks.md shows, from one ``camera`` report."""
    base = report["baseline"]
    lines = [("| run | scenes | frames/s | ratio to baseline | latency p50 / p99 | agreement (fingers / hands) "
              "| detector ran | gated |"), "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def row(name: str, kind: str, r: dict[str, Any]) -> str:
        ratio = r.get("ratio_to_baseline")
        return (f"| {name} | {kind} | {r['fps']:.1f} | {'—' if ratio is None else f'{ratio:.2f}'} | "
                f"{_ms(r['latency_ms'], 'p50')} / {_ms(r['latency_ms'], 'p99')} ms | "
                f"{_pct(r['agreement'])} / {_pct(r['hands_agreement'])} | {_pct(r['detector_fraction'])} | "
                f"{_pct(r['gated_fraction'])} |")

    edges = [e for e in report["edge"] if "failed" not in e]
    sides = [("baseline (raw VIDEO)", base)] + [(_edge_name(e), e) for e in edges]
    for load in report["loads"]:
        for name, side in sides:
            kinds = side[load]
            shown = (*camclips.KINDS, "all") if load == "mix" else tuple(k for k in camclips.KINDS if k in kinds)
            lines += [row(name, f"{kind} ({load})" if load != "mix" else kind, kinds[kind])
                      for kind in shown if kind in kinds]
    lines += ["", "| run | load | scenes | frames both answered | agreement, edge / baseline |",
              "| --- | --- | --- | --- | --- |"]
    for e in edges:
        for load in report["loads"]:
            for kind, a in e.get("agreement_shared", {}).get(load, {}).items():
                lines.append(f"| {_edge_name(e)} | {load} | {kind} | {a['frames']} | {_pct(a['edge'])} / "
                             f"{_pct(a['baseline'])} |")
    for e in edges:
        cores = ", ".join(f"{load} {n}" for load, n in e.get("client_cpu_cores", {}).items())
        if cores:
            lines += ["", f"Load generator (same cores; none in the baseline), {_edge_name(e)}: {cores} cores."]
    lines += ["", ("| run | 1 one-hand stream: frames/s | latency p50 / p99 | p50 over raw per-frame p50 "
                   "| added to its own decode + inference (p50) |"), "| --- | --- | --- | --- | --- |",
              (f"| baseline (raw VIDEO) | {base['one_stream']['fps']:.1f} | "
               f"{_ms(base['one_stream']['model_ms'], 'p50')} / {_ms(base['one_stream']['model_ms'], 'p99')} ms "
               "| — | — |")]
    for e in edges:
        one = e["one_stream"]
        name = _edge_name(e)
        lines.append(f"| {name} | {one['fps']:.1f} | {_ms(one['latency_ms'], 'p50')} / "
                     f"{_ms(one['latency_ms'], 'p99')} ms | {one['overhead_over_raw_p50_ms']} ms | "
                     f"{one.get('added_p50_ms')} ms |")
    lines += [f"\n{_edge_name(e)} failed: {e['failed']}" for e in report["edge"] if "failed" in e]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m research.camera_report REPORT.json   (make one with: hgr bench --sections camera)",
              file=sys.stderr)
        return 2
    loaded = json.loads(Path(argv[0]).read_text())
    print(markdown(loaded.get("camera", loaded)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
