"""Chaos and soak: real processes, good and hostile traffic together, injected faults; one JSON report.

    python -m research.chaos --duration 300 [--out report.json]    # the soak of docs/deployment.md
    python -m research.chaos --mode acceptance [--out report.json] # issue 13's two measurements

Everything runs on loopback and is bounded: a private ``redis-server`` and ``mosquitto`` on free ports, one
``hgr hub`` and one ``hgr edge`` (one inference worker each), all stopped at the end; the run stops by
itself after ``--duration`` seconds.

``soak`` (default): good clients (REST single images at concurrency 2, one WebSocket camera at 5 fps) and
one hostile action per second (the issue-13 repros in turn: a 32767-px PNG, an 8 MB ``[[],[],…]`` body, lone
surrogates, a JPEG cut in the middle, nested JSON and NaN on a WebSocket, slow headers, a wrong Content-Type,
GET on a POST route) while the faults hit in turn: kill the edge's worker, restart Redis, stop the broker
(and start it again), reload the hub (SIGTERM, start again on the same port), kill the hub's worker. A fault's
documented effect lasts from its start until the affected part is back (``recovered_s``) plus 2 s; good
requests in those windows are reported apart. The report: good clients' success rate and p99 (outside
and inside the windows), the hostile answers, worker restarts (expected: one per killed worker), and
RSS and readiness every second.

``acceptance``: undisturbed good-client throughput for ``--phase`` seconds, the same with one crafted
request per second, undisturbed again (the ratio is against the mean of the two undisturbed phases, to
cancel the drift of a shared machine), ``/ready`` polled throughout; then ``/health`` latency and hub RSS
while a 63 MB hostile body arrives, against the same measured just before.

The parts: ``stack`` (the processes), ``record`` (what a run records), ``traffic`` (good clients),
``hostile`` (the crafted actions), ``sampling`` (readiness, RSS and worker restarts every second),
``faults`` (what is injected, and when), ``report`` (the soak's report and verdict), ``modes`` (``soak`` and
``acceptance``), ``__main__`` (the command line).
"""
