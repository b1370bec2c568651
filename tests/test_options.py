"""common/options.py: per-request and per-stream options, validated before any work, falling back to the
node's defaults field by field."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest

from hgr.common.config import load_settings
from hgr.common.contracts import RestOptions
from hgr.common.options import VARIANTS, BadOptions, DetectOptions, NumHands, check_model, default_options

DEFAULTS = DetectOptions(num_hands=2, mirrored=False, model="full")


def test_absent_options_are_the_defaults_and_each_field_overrides_alone() -> None:
    assert DetectOptions.parse(None, DEFAULTS) is DEFAULTS
    assert DetectOptions.parse({}, DEFAULTS) == DEFAULTS
    assert DetectOptions.parse({"num_hands": 1}, DEFAULTS) == DetectOptions(1, False, "full")
    assert DetectOptions.parse({"mirrored": True, "model": "lite"}, DEFAULTS) == DetectOptions(2, True, "lite")


@pytest.mark.parametrize("raw,fragment", [
    ([1], "must be an object"), ({"colour": "red", "size": 1}, "unknown option(s): colour, size"),
    ({"num_hands": 0}, "num_hands"), ({"num_hands": 5}, "num_hands"), ({"num_hands": True}, "num_hands"),
    ({"num_hands": 2.0}, "num_hands"), ({"mirrored": "yes"}, "mirrored"), ({"model": "huge"}, "model must be"),
])
def test_bad_options_say_which_field(raw: object, fragment: str) -> None:
    with pytest.raises(BadOptions, match=fragment.replace("(", r"\(").replace(")", r"\)")) as info:
        DetectOptions.parse(raw, DEFAULTS)
    assert (info.value.code, info.value.status) == ("bad_options", 422)


def test_a_variant_the_node_lacks_is_model_unavailable() -> None:
    check_model("full", {"full"})
    with pytest.raises(BadOptions) as info:
        check_model("lite", {"full"})
    assert info.value.code == "model_unavailable" and "available: full" in info.value.message


def test_defaults_come_from_the_settings_and_the_cache_key_covers_every_field() -> None:
    opts = default_options(load_settings({"NUM_HANDS": "1", "HGR_MODEL_VARIANT": "lite"}, env_file=None))
    assert (opts.num_hands, opts.model) == (1, "lite")
    keys = {DetectOptions(n, m, v).cache_key() for n in (1, 2) for m in (False, True) for v in ("full", "lite")}
    assert len(keys) == 8


def test_rest_options_take_their_bounds_from_the_options_declaration() -> None:
    # REST shows the variants as an enum (OpenAPI) and the hand count with its description: the same
    # bounds as a WebSocket frame's opts, declared once in hgr.common.options
    schema = msgspec.json.schema(RestOptions)["$defs"]["RestOptions"]["properties"]
    assert tuple(schema["model"]["enum"]) == VARIANTS
    bounds = get_args(NumHands)[1]
    assert (schema["num_hands"]["minimum"], schema["num_hands"]["maximum"]) == (bounds.ge, bounds.le)
