"""Which photos calibrate the static int8 candidates, and so which are held out."""

from __future__ import annotations

from collections.abc import Sequence

from research.accuracy import Photo


def calibration_split(photos: Sequence[Photo], seed: int) -> set[str]:
    """The files that calibrate the static int8 candidates: half of each recording session (rounded up), drawn
    with ``seed``. By session so both halves hold every lighting and background (one source is one session of
    60 photos: a split by session would leave it out of one half); the other half is the held-out set the gate
    also reports on alone."""
    import random

    sessions: dict[tuple[str, str], list[str]] = {}
    for p in photos:
        sessions.setdefault((p.source, p.session), []).append(p.file)
    rng = random.Random(seed)
    chosen: set[str] = set()
    for key in sorted(sessions):
        files = sorted(sessions[key])
        rng.shuffle(files)
        chosen.update(files[:(len(files) + 1) // 2])
    return chosen
