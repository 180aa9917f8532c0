"""The whole pipeline on synthetic data, for a new user right after install: synth, train, export, infer.

Each step is the library function the corresponding command calls, so the demo shows exactly what
``bratsx synth``, ``train``, ``export`` and ``infer`` do, in a few minutes on a laptop CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoPlan", "cpu_has_fast_bf16", "demo_plan"]


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of a demo run: full (a few minutes on a CPU) or fast (seconds, for tests)."""

    cases: int
    shape: tuple[int, int, int]
    features: tuple[int, ...]
    patch: tuple[int, int, int]
    epochs: int
    iterations: int
    val_every: int
    max_seconds: float
    amp: bool


def demo_plan(fast: bool = False) -> DemoPlan:
    """The default demo: 16 cases of 96x96x80, a small network, at most 5 minutes of training."""
    if fast:
        return DemoPlan(4, (40, 40, 32), (4, 8, 16), (16, 16, 16), 1, 3, 1, 60.0, False)
    return DemoPlan(16, (96, 96, 80), (16, 32, 64, 128), (64, 64, 64), 6, 50, 3, 300.0, cpu_has_fast_bf16())
