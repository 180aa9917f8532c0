"""The machine's measured peak: what a large matrix product reaches here, now, per precision.

Effective GFLOP/s of a backend mean little alone; as a fraction of what this machine reaches on a
large square GEMM of the same precision in the same run, they say how much of the hardware
inference uses. fp32 goes through numpy's BLAS; bf16 through PyTorch (oneDNN, which uses the CPU's
bf16 instructions where it has them), so a bf16 backend is not judged against the fp32 peak.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..extras import optional_module

__all__ = ["cpu_gemm_gflops"]


def _best_seconds(product: Callable[[], object], repeat: int) -> float:
    product()  # warm up threads and caches
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - start)
    return best


def cpu_gemm_gflops(size: int = 2048, repeat: int = 5, precision: str = "fp32") -> float | None:
    """Best GFLOP/s of ``size x size`` matrix products.

    Args:
        size: matrix side.
        repeat: timed products (the best counts).
        precision: ``fp32`` (numpy) or ``bf16`` (PyTorch).

    Returns:
        GFLOP/s, or ``None`` for bf16 when PyTorch is not installed.
    """
    if precision == "fp32":
        rng = np.random.default_rng(0)
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        product = lambda: a @ b  # noqa: E731
    elif precision == "bf16":
        torch = optional_module("torch")
        if torch is None:
            return None
        generator = torch.Generator().manual_seed(0)
        a, b = (torch.randn(size, size, generator=generator, dtype=torch.bfloat16) for _ in range(2))
        product = lambda: torch.mm(a, b)  # noqa: E731
    else:
        raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
    return 2.0 * size**3 / _best_seconds(product, repeat) / 1e9
