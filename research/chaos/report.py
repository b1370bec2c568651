"""The soak's report: good clients inside and outside the fault windows, hostile answers, restarts, RSS."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from hgr.common.percentiles import percentiles
from research.chaos.record import GRACE_S, Fault, Record, Run


def _summary(records: list[Record], faults: list[Fault]) -> dict[str, Any]:
    outside = [r for r in records if not any(f.covers(r.t0, r.t1) for f in faults)]
    inside = [r for r in records if r not in outside]

    def part(rs: list[Record]) -> dict[str, Any]:
        ok, failed = sum(r.ok for r in rs), sum(r.failed for r in rs)
        lat = [x for r in rs for x in r.latencies_ms]
        return {"ok": ok, "failed": failed, "success_rate": round(ok / (ok + failed), 4) if ok + failed else None,
                "latency_ms": percentiles(lat),
                "failures": dict(Counter(r.outcome for r in rs if r.failed).most_common(8))}
    return {"outside_faults": part(outside), "inside_faults": part(inside)}


def _rss_trend(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [s[key] for s in samples if s.get(key)]
    if len(values) < 10:
        return {"samples": len(values)}
    fifth = max(1, len(values) // 5)
    first, last = values[fifth: 2 * fifth], values[-fifth:]  # skip the first fifth: warm-up
    return {"start_mb": round(sum(first) / len(first), 1), "end_mb": round(sum(last) / len(last), 1),
            "max_mb": round(max(values), 1), "growth_mb": round(sum(last) / len(last) - sum(first) / len(first), 1)}


def soak_report(run: Run, duration: float) -> dict[str, Any]:
    for (service, _), count in run.restarts_by_pid.items():
        run.restarts[service] += count
    killed = Counter("edge" if f.name == "kill_edge_worker" else "hub" for f in run.faults if f.name.startswith("kill"))
    hostile_5xx = [(t, k, o) for t, k, o in run.hostile if o[:1] == "5"
                   and not any(f.covers(t, t) for f in run.faults)]
    good = {kind: _summary(records, run.faults) for kind, records in run.good.items()}
    edge_rss = _rss_trend(run.samples, "edge")
    unready = [s for s in run.samples if (s.get("hub_ready") != 200 or s.get("edge_ready") != 200)
               and not any(f.covers(s["t"], s.get("t_end", s["t"])) for f in run.faults)]
    verdict = {
        "good_success_outside_faults_ge_99pct": all(
            (g["outside_faults"]["success_rate"] or 0) >= 0.99 for g in good.values()),
        "hostile_5xx_outside_faults": len(hostile_5xx),
        "worker_restarts_equal_kills": all(run.restarts.get(k, 0) == killed.get(k, 0) for k in ("hub", "edge")),
        "edge_rss_growth_lt_50mb": edge_rss.get("growth_mb", 0) < 50,
        "unready_samples_outside_faults": len(unready),
    }
    verdict["passed"] = (verdict["good_success_outside_faults_ge_99pct"] and not hostile_5xx
                         and verdict["worker_restarts_equal_kills"] and verdict["edge_rss_growth_lt_50mb"]
                         and not unready)
    return {
        "mode": "soak", "duration_s": duration, "cpus": os.cpu_count(),
        "faults": [vars(f) for f in run.faults], "grace_s": GRACE_S, "good": good,
        "unready_outside_faults": unready[:10],
        "hostile": {"sent": len(run.hostile), "5xx_outside_faults": hostile_5xx[:10], "outcomes": {
            kind: dict(Counter(o for _, k, o in run.hostile if k == kind))
            for kind in sorted({k for _, k, _ in run.hostile})}},
        "worker_restarts": dict(run.restarts), "workers_killed": dict(killed),
        "rss": {"edge": edge_rss, "edge_workers": _rss_trend(run.samples, "edge_workers"),
                "hub": _rss_trend(run.samples, "hub"), "hub_workers": _rss_trend(run.samples, "hub_workers")},
        "samples": run.samples, "verdict": verdict,
    }
