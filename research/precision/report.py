"""A saved report as the Markdown table of docs/accuracy.md."""

from __future__ import annotations

from typing import Any


def table(report: dict[str, Any]) -> str:
    """The candidates × gate figures × speed as a Markdown table (docs/accuracy.md)."""
    timing = report["timing"]

    def speed(model: str, variant: str) -> str:
        t = timing[model].get(variant)
        return "" if variant == "fp32" or t is None else f"{model} {t['speed_p50']:.2f}× ({t['speed_p10']:.2f}×)"

    rows = [("| palm / landmark | same count | counted right (fp32) | with a hand (fp32) | landmark gap median / "
             "worst | fixtures (fp32) | clip frames agreeing | gate | speed, p50 (p10) |"),
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    fixtures = report["reference_fixtures"]["same_count"]
    control = report.get("control_shifted_1px")
    if control:
        s, g = control["stills"], control["stills"]["landmark_gap"]
        rows.append(f"| fp32 / fp32 on the photos moved 1 px (control) | {s['same_count']}/{s['photos']} | "
                    f"{s['correct']['ours']} ({s['correct']['reference']}) | {s['detected']['ours']} "
                    f"({s['detected']['reference']}) | {100 * (g['median'] or 0):.3f} % / {100 * g['worst']:.1f} % | "
                    f"{control['fixtures']['same_count']} ({fixtures}) | | | |")

    def row(label: str, c: dict[str, Any], fixtures: int, speeds: str) -> str:
        s, clips, gate = c["stills"], c.get("clips"), c["gate"]
        g = s["landmark_gap"]
        failed = [k for k, ok in gate.items() if k != "pass" and not ok]
        clip = f"{clips['same_frames']}/{clips['frames']} ({100 * clips['same_frames'] / clips['frames']:.1f} %)" \
            if clips else ""
        return (f"| {label} | {s['same_count']}/{s['photos']} | {s['correct']['ours']} "
                f"({s['correct']['reference']}) | {s['detected']['ours']} ({s['detected']['reference']}) | "
                f"{100 * (g['median'] or 0):.3f} % / {100 * g['worst']:.1f} % | {c['fixtures']['same_count']} "
                f"({fixtures}) | {clip} | {'pass' if gate['pass'] else 'fails ' + ', '.join(failed)} | {speeds} |")

    for name, c in report["candidates"].items():
        palm, landmark = (part.split("=")[1] for part in name.split())
        rows.append(row(f"{palm} / {landmark}", c, fixtures,
                        "; ".join(x for x in (speed("palm", palm), speed("landmark", landmark)) if x)))
        if "held_out" in c:  # static int8: the photos that did not calibrate it
            held = c["held_out"]
            rows.append(row(f"{palm} / {landmark}, held-out photos only", held,
                            held["reference_fixtures"]["same_count"], ""))
    return "\n".join(rows) + "\n"
