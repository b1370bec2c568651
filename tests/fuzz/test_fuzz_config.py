"""Environment configuration, fuzzed: any values of the real variable names give Settings within their
declared bounds, or a ConfigError naming the variable; nothing else escapes load_settings."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given
from hypothesis import strategies as st

from hgr.common.config import Settings, load_settings
from hgr.common.errors import ConfigError
from tests.fuzz.conftest import fuzz

FIELDS = {f.metadata["env"]: f for f in dataclasses.fields(Settings)}
EDGES = ["0", "-1", "1e309", "nan", "NaN", "inf", "-inf", "true", "off", " 7 ", "99999999999999999999", "0x10",
         "1_000", "@/nonexistent", "mqtt://", "redis://", "unix://", "a:b:c", "+", "#"]
values = st.one_of(st.sampled_from(EDGES), st.text(max_size=30), st.integers().map(str), st.floats().map(str))


@given(env=st.dictionaries(st.sampled_from(sorted(FIELDS)), values, max_size=3))
@fuzz(3.0)
def test_any_environment_loads_or_says_which_variable(env: dict[str, str]) -> None:
    env = {k: v.replace("\x00", "") for k, v in env.items()}
    try:
        settings = load_settings(env, env_file=None)
    except ConfigError as exc:
        assert any(name in exc.message for name in [*env, "AUTH_ENABLED", "API_KEYS"]), exc.message
        return
    for f in dataclasses.fields(Settings):
        value, lo, hi = getattr(settings, f.name), f.metadata["min"], f.metadata["max"]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert math.isfinite(value), f.name
            assert (lo is None or value >= lo) and (hi is None or value <= hi), (f.name, value)
