"""The Hypothesis fuzzers (profiles in conftest.py)."""
