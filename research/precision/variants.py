"""The candidates' names (``--variants``) and what each is: the tables ``candidates.build`` reads."""

from __future__ import annotations

MODELS = ("palm", "landmark")
VARIANTS = ("int8_conv2d", "int8_conv", "int8_all", "ov_f32", "ov_bf16", "ov_bf16_ends1", "ov_bf16_ends2",
            "ov_bf16_ends4", "ov_bf16_ends8", "int8_static", "int8_static_ends1", "int8_static_ends2",
            "int8_static_ends4", "int8_static_minmax", "int8_static_minmax_ends4")
# ``keep_f32``'s (first, last) per variant.
ENDS = {f"ov_bf16_ends{n}": (n, n) for n in (1, 2, 4, 8)}
# Static int8: heavy layers kept float at each end (0: none, only the model's float input and outputs), and
# each tensor's range over the calibration inputs: the quantizer's moving average of their min/max, or min/max.
STATIC = {"int8_static": (0, "average"), **{f"int8_static_ends{n}": (n, "average") for n in (1, 2, 4)},
          "int8_static_minmax": (0, "minmax"), "int8_static_minmax_ends4": (4, "minmax")}


class Missing(RuntimeError):
    """An optional package a candidate needs is not installed."""
