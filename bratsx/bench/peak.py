"""The machine's measured peak: what a large fp32 matrix product reaches here, now.

Effective GFLOP/s of a backend mean little alone; as a fraction of what this machine's BLAS reaches
on a large square GEMM in the same run, they say how much of the hardware inference uses.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["cpu_gemm_gflops"]


def cpu_gemm_gflops(size: int = 2048, repeat: int = 5) -> float:
    """Best GFLOP/s of ``size x size`` fp32 matrix products through numpy's BLAS."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm up threads and caches
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9
