"""What a caller may choose per request or per stream, and the checks on it.

Kept apart from ``common.inference.engine`` so the processes that only route frames (the server, the pool's
parent side) never import MediaPipe, OpenCV or Pillow.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

from hgr.common.config import Settings
from hgr.common.errors import HgrError

VARIANTS = ("full", "lite")


class BadOptions(HgrError):
    code = "bad_options"


@dataclass(frozen=True, slots=True)
class DetectOptions:
    """Per-request (or per-stream) choices; anything absent falls back to the settings."""

    num_hands: int = 2
    mirrored: bool = False
    model: str = "full"

    @classmethod
    def parse(cls, raw: Any, defaults: DetectOptions) -> DetectOptions:
        if raw is None:
            return defaults
        if not isinstance(raw, dict):
            raise BadOptions("options must be an object")
        unknown = set(raw) - {"num_hands", "mirrored", "model"}
        if unknown:
            raise BadOptions(f"unknown option(s): {', '.join(sorted(map(str, unknown)))}")
        opts = defaults
        if "num_hands" in raw:
            n = raw["num_hands"]
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 4:
                raise BadOptions("num_hands must be an integer from 1 to 4")
            opts = replace(opts, num_hands=n)
        if "mirrored" in raw:
            if not isinstance(raw["mirrored"], bool):
                raise BadOptions("mirrored must be true or false")
            opts = replace(opts, mirrored=raw["mirrored"])
        if "model" in raw:
            if raw["model"] not in VARIANTS:
                raise BadOptions(f"model must be one of {', '.join(VARIANTS)}")
            opts = replace(opts, model=raw["model"])
        return opts

    def cache_key(self) -> str:
        return f"n{self.num_hands}-m{int(self.mirrored)}-{self.model}"


def default_options(settings: Settings) -> DetectOptions:
    return DetectOptions(num_hands=settings.num_hands, model=settings.model_variant)


def check_model(model: str, available: Collection[str]) -> None:
    """BadOptions (code ``model_unavailable``) unless this node has the ``model`` variant."""
    if model not in available:
        raise BadOptions(f"the {model} model is not available on this node "
                         f"(available: {', '.join(sorted(available))})", code="model_unavailable")
