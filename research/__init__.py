"""Research runs: the studies, soaks and report generators behind the numbers in docs/ (accuracy, tracking,
stream-path choices, the LiteRT pipeline, the decoder, the MQTT fleet, the chaos soak).

Not part of the package, the wheel or the images: run them from a checkout, ``python -m research.<name>``.
They import ``hgr.*`` (``hgr.loadtest.procs`` for processes and measurements); nothing in ``hgr`` imports
them (tests/test_layers.py). Paths into the checkout are fine here, and only here (``research.paths``).
"""
