"""hgr/serve.py steady_gc: a server freezes what start-up built and looks at the oldest generation less often
(full collections of a hub holding a fleet took 75-105 ms each: docs/benchmarks.md "Row 6 again")."""

from __future__ import annotations

import gc

from hgr.serve import GC_OLDEST_EVERY, steady_gc


def test_steady_gc_freezes_start_up_and_keeps_the_young_generations() -> None:
    thresholds = gc.get_threshold()
    try:
        steady_gc()
        assert gc.get_freeze_count() > 1000  # the modules and objects imported so far
        assert gc.get_threshold() == (thresholds[0], thresholds[1], GC_OLDEST_EVERY)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
