"""Which runtime and number format run the hand models: ``INFERENCE_RUNTIME`` × ``INFERENCE_PRECISION``, the
CPU's features and what is installed → one ``Choice``. Pure (the features and the installation are passed in),
so every rule is tested on any machine; ``cpu_flags`` and ``openvino_installed`` read this machine.

The rules (docs/accuracy.md "Lower precision"): bf16 exists only through OpenVINO, and pays only where the
CPU computes in it (``avx512_bf16``, ``amx_bf16``; elsewhere OpenVINO's CPU plugin silently runs f32), so
``auto`` picks OpenVINO bf16 there and LiteRT fp32 everywhere else, where OpenVINO f32 is no faster (measured
on AVX2: within 5 % per model). No int8 choice: none passed the answers' gate (docs/accuracy.md).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

RUNTIMES = ("auto", "litert", "openvino")
PRECISIONS = ("auto", "fp32", "bf16")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo's names for bf16 arithmetic
MISSING_OPENVINO = ("OpenVINO is not installed: `pip install 'hgr[openvino]'`; the images carry it only when built "
                    "with --build-arg HGR_OPENVINO=true (docs/deployment.md \"Image size\")")


@dataclass(frozen=True)
class Choice:
    runtime: str  # litert | openvino
    precision: str  # fp32 | bf16

    @property
    def name(self) -> str:
        return f"{self.runtime}/{self.precision}"


REFERENCE = Choice("litert", "fp32")  # what every other choice is checked against (and falls back to)


def has_bf16(flags: frozenset[str]) -> bool:
    return bool(flags & BF16_FLAGS)


def choose(runtime: str, precision: str, *, flags: frozenset[str], openvino: bool) -> Choice:
    """The choice the settings ask for on this CPU; ValueError (its text names the setting) if they cannot be
    met: bf16 on LiteRT, or OpenVINO asked for and not installed."""
    if runtime not in RUNTIMES or precision not in PRECISIONS:
        raise ValueError(f"INFERENCE_RUNTIME={runtime!r} / INFERENCE_PRECISION={precision!r}: unknown")
    if runtime == "litert":
        if precision == "bf16":
            raise ValueError("INFERENCE_PRECISION=bf16 needs INFERENCE_RUNTIME=openvino or auto: LiteRT runs "
                             "these models in fp32 only")
        return REFERENCE
    wants_openvino = runtime == "openvino" or precision == "bf16"
    if wants_openvino and not openvino:
        setting = "INFERENCE_RUNTIME=openvino" if runtime == "openvino" else "INFERENCE_PRECISION=bf16"
        raise ValueError(f"{setting}: {MISSING_OPENVINO}")
    if precision == "auto":
        precision = "bf16" if openvino and has_bf16(flags) else "fp32"
    if runtime == "auto":
        runtime = "openvino" if precision == "bf16" else "litert"
    return Choice(runtime, precision)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first processor's feature flags (Linux); empty where there is no such file (never bf16)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def choose_here(runtime: str, precision: str) -> Choice:
    """``choose`` on this machine."""
    return choose(runtime, precision, flags=cpu_flags(), openvino=openvino_installed())
