"""What a caller may choose per request or per stream, and the checks on it.

Kept apart from ``common.inference.engine`` so the processes that only route frames (the server, the pool's
parent side) never import MediaPipe, OpenCV or Pillow. ``OptionsDoc`` (re-exported by ``common.contracts``)
is the options' one declaration: ``DetectOptions.parse`` validates a client's options with it (msgspec).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, TypedDict, get_args

import msgspec

from hgr.common.config import Settings
from hgr.common.errors import HgrError

Variant = Literal["full", "lite"]  # the model variants: declared here once (REST's enum, the pattern below)
VARIANTS: tuple[str, ...] = get_args(Variant)
NumHands = Annotated[int, msgspec.Meta(ge=1, le=4)]
# A str to the type checker (settings and callers hold plain strings), one of VARIANTS at run time.
ModelVariant = Annotated[str, msgspec.Meta(pattern=f"^({'|'.join(VARIANTS)})$")]


class OptionsDoc(TypedDict, total=False):
    """Detection options as a client sends them: a REST body's ``options``, a WebSocket frame's ``opts``."""

    num_hands: NumHands
    mirrored: bool
    model: ModelVariant
    camera: str  # names the stream, on its first frame only (edge.session; docs/protocol.md "Named streams")


# What ``DetectOptions.parse`` takes: every option but ``camera`` (the WebSocket session takes that one out).
OPTION_NAMES = frozenset(OptionsDoc.__annotations__) - {"camera"}
# How a refusal names what a field takes (the field's type as a client reads it).
_EXPECTED = {"num_hands": "an integer from {ge} to {le}", "mirrored": "true or false", "model": "one of {choices}"}


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
        # msgspec ignores unknown keys of a TypedDict; a misspelt option must not be ignored silently.
        unknown = set(raw) - OPTION_NAMES
        if unknown:
            raise BadOptions(f"unknown option(s): {', '.join(sorted(map(str, unknown)))}")
        try:
            doc = msgspec.convert(raw, OptionsDoc)
        except msgspec.ValidationError as exc:
            raise BadOptions(_refusal(str(exc))) from None
        return replace(defaults, num_hands=doc.get("num_hands", defaults.num_hands),
                       mirrored=doc.get("mirrored", defaults.mirrored), model=doc.get("model", defaults.model))

    def cache_key(self) -> str:
        return f"n{self.num_hands}-m{int(self.mirrored)}-{self.model}"


def _refusal(error: str) -> str:
    """``num_hands must be an integer from 1 to 4`` from msgspec's ``Expected `int` <= 4 - at `$.num_hands```."""
    field = error.rpartition("$.")[2].rstrip("`")
    if field not in _EXPECTED:
        return f"bad options: {error}"
    meta = get_args(NumHands)[1]
    return f"{field} must be " + _EXPECTED[field].format(ge=meta.ge, le=meta.le, choices=", ".join(VARIANTS))


def default_options(settings: Settings) -> DetectOptions:
    return DetectOptions(num_hands=settings.num_hands, model=settings.model_variant)


def check_model(model: str, available: Collection[str]) -> None:
    """BadOptions (code ``model_unavailable``) unless this node has the ``model`` variant."""
    if model not in available:
        raise BadOptions(f"the {model} model is not available on this node "
                         f"(available: {', '.join(sorted(available))})", code="model_unavailable")
