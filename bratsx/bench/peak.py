"""The machine's peak per precision (fp32, bf16, int8): measured with the library the backends use, and
computed from the CPU's description.

Effective GFLOP/s of a backend mean little alone; as a fraction of what this machine reaches with the same
library at the same precision, they say how much of the hardware inference uses. Round 2 divided by a GEMM
peak measured through numpy, whose OpenBLAS runs an older kernel on some machines (``OPENBLAS_CORETYPE``), so
OpenVINO f32 once showed 174% of "peak". Here the peak is measured with oneDNN through OpenVINO, the library
of the ``openvino*`` backends:

- a large MatMul and a large 3D convolution (the network's own operation), each a one-operation OpenVINO
  model, threads pinned, one per physical core, ``INFERENCE_PRECISION_HINT`` f32 or bf16; for int8 the same
  models with FakeQuantize on both inputs (u8 activations, i8 weights), which the CPU plugin runs as int8
  kernels (VNNI/AMX), as it does an NNCF-quantized model;
- what each operation really ran in is read back from the compiled model (``runtimePrecision`` and the oneDNN
  kernel of the MatMul/Convolution node) and recorded: a precision the CPU does not have (bf16 without
  AVX512-BF16/AMX) runs in f32, and its peak is then not counted as that precision's;
- the measured peak of a precision is the faster of its two operations.

The theoretical peak is cores x frequency x FLOP per cycle per core, from ``lscpu``/``/proc/cpuinfo``: the
FMA width from the CPU flags and vendor (see :func:`flop_per_cycle`). The frequency is ``lscpu``'s
maximum when it reports one, else ``/proc/cpuinfo``'s current (in a virtual machine, the nominal clock:
a boost above it can put the measured peak above the theoretical one; both are recorded, with their
basis). Both go into every bench results file.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import optional_module

__all__ = ["PRECISIONS", "CpuSpec", "cpu_spec", "flop_per_cycle", "library_peaks", "machine_peaks",
           "measured_peak", "precision_of_runtime", "theoretical_peaks"]

#: Precisions a peak is given for.
PRECISIONS = ("fp32", "bf16", "int8")
#: Sizes of the measured operations: a square MatMul side, and a 3D convolution's channels (in = out) and
#: cube side (3x3x3 kernel, padded): 17 and 24 GFLOP per call, large enough to run at the kernels' rate.
MATMUL_SIZE = 2048
CONV_CHANNELS, CONV_SIDE = 64, 48


@dataclass(frozen=True)
class CpuSpec:
    """What the theoretical peak is computed from.

    Attributes:
        vendor: ``GenuineIntel``, ``AuthenticAMD``, ...
        family: the CPU family number (AMD Zen 4 is 25, Zen 5 26).
        flags: the CPU flags (``avx512f``, ``avx512_bf16``, ``avx512_vnni``, ``amx_bf16``, ...).
        cores: physical cores (SMT siblings share their core's FMA units).
        mhz: the clock the peak is computed at.
        mhz_source: where ``mhz`` came from.
    """

    vendor: str
    family: int
    flags: frozenset[str]
    cores: int
    mhz: float
    mhz_source: str


def _lscpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def cpu_spec(cpuinfo: str | None = None, lscpu: dict[str, str] | None = None) -> CpuSpec:
    """This machine's :class:`CpuSpec` (or the one ``cpuinfo``'s text and ``lscpu``'s fields describe)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    lscpu = _lscpu() if lscpu is None else lscpu
    fields: dict[str, list[str]] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), []).append(value.strip())
    first = {key: values[0] for key, values in fields.items()}
    try:
        cores = int(lscpu["Core(s) per socket"]) * int(lscpu.get("Socket(s)", "1"))
    except (KeyError, ValueError):
        cores = os.cpu_count() or 1
    if lscpu.get("CPU max MHz"):
        mhz, source = float(lscpu["CPU max MHz"]), "lscpu CPU max MHz"
    elif fields.get("cpu MHz"):
        mhz = float(np.mean([float(v) for v in fields["cpu MHz"]]))
        source = "/proc/cpuinfo cpu MHz (no maximum reported; in a virtual machine the nominal clock)"
    else:
        mhz, source = 0.0, "unknown"
    return CpuSpec(vendor=first.get("vendor_id", "unknown"), family=int(first.get("cpu family", "0") or 0),
                   flags=frozenset(first.get("flags", "").split()), cores=cores, mhz=mhz, mhz_source=source)


def flop_per_cycle(spec: CpuSpec) -> dict[str, tuple[int | None, str]]:
    """FLOP (int8: operations) per cycle per core for each precision, with the reason.

    fp32: 2 FMA pipes per core, each as wide as the vector datapath: 2 x 512 bits with AVX-512 on Intel and
    AMD Zen 5, 2 x 256 bits on AMD Zen 4 (AVX-512 instructions split in two halves) and with AVX2/FMA;
    2 FLOP per lane. bf16: AVX512-BF16's dot product does 2 multiply-adds per fp32 lane (2x fp32); AMX
    does 1024 bf16 multiply-adds per cycle (Intel's figure). int8: VNNI does 4 multiply-adds per 32-bit
    lane (4x fp32); AMX 2048. A precision without its instructions gets ``None``: its operations run
    through another precision's units, and no peak of its own is claimed.
    """
    flags = spec.flags
    if "avx512f" in flags:
        half = spec.vendor == "AuthenticAMD" and spec.family < 26
        fma_bits, how = (512, "AVX-512 on 2 x 256-bit FMA pipes (AMD Zen 4)") if half else \
            (1024, "AVX-512, 2 x 512-bit FMA units (parts with one FMA unit reach half)")
    elif "fma" in flags:
        fma_bits, how = 512, "AVX2, 2 x 256-bit FMA pipes"
    else:
        return {p: (None, "no FMA instructions: not estimated") for p in PRECISIONS}
    fp32 = fma_bits // 32 * 2
    rates: dict[str, tuple[int | None, str]] = {"fp32": (fp32, f"{how}: {fma_bits // 32} fp32 FMA lanes x 2")}
    if "amx_bf16" in flags:
        rates["bf16"] = (2048, "AMX: 1024 bf16 multiply-adds per cycle")
    elif "avx512_bf16" in flags:
        rates["bf16"] = (2 * fp32, "AVX512-BF16: 2 multiply-adds per fp32 lane")
    else:
        rates["bf16"] = (None, "no bf16 instructions: bf16 runs as fp32")
    if "amx_int8" in flags:
        rates["int8"] = (4096, "AMX: 2048 int8 multiply-adds per cycle")
    elif flags & {"avx512_vnni", "avx_vnni"}:
        rates["int8"] = (4 * fp32, "VNNI: 4 multiply-adds per 32-bit lane")
    else:
        rates["int8"] = (None, "no VNNI: not estimated")
    return rates


def theoretical_peaks(spec: CpuSpec) -> dict[str, Any]:
    """Cores x frequency x FLOP per cycle, per precision (GFLOP/s; ``None`` where not estimated), with the basis."""
    gflops, basis = {}, {}
    for precision, (per_cycle, why) in flop_per_cycle(spec).items():
        gflops[precision] = spec.cores * spec.mhz / 1e3 * per_cycle if per_cycle and spec.mhz else None
        basis[precision] = f"{spec.cores} cores x {spec.mhz:.0f} MHz x {per_cycle or 0} per cycle ({why})"
    return {"gflops": gflops, "basis": basis, "cores": spec.cores, "mhz": spec.mhz, "mhz_source": spec.mhz_source,
            "vendor": spec.vendor, "family": spec.family,
            "flags": sorted(f for f in spec.flags if re.match(r"(avx|amx|fma)", f))}


def precision_of_runtime(runtime: str) -> str:
    """A compiled OpenVINO node's ``runtimePrecision`` as a bench precision (``u8``/``i8`` are int8)."""
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "u8": "int8", "i8": "int8"}.get(runtime, runtime)


def _one_operation(ov: Any, operation: str, int8: bool) -> tuple[Any, tuple[int, ...], float]:
    """A one-operation OpenVINO model (``matmul`` or ``conv3d``), its input shape and its FLOPs per call."""
    ops = ov.opset13
    rng = np.random.default_rng(0)
    if operation == "matmul":
        shape: tuple[int, ...] = (MATMUL_SIZE, MATMUL_SIZE)
        weights = rng.standard_normal(shape).astype(np.float32)
        flops = 2.0 * MATMUL_SIZE**3
    else:
        shape = (1, CONV_CHANNELS, CONV_SIDE, CONV_SIDE, CONV_SIDE)
        weights = (0.1 * rng.standard_normal((CONV_CHANNELS, CONV_CHANNELS, 3, 3, 3))).astype(np.float32)
        flops = 2.0 * CONV_SIDE**3 * CONV_CHANNELS**2 * 27
    source = ops.parameter(list(shape), np.float32, name="x")
    x, w = source, ops.constant(weights)
    if int8:  # u8 activations in [0, 4], i8 weights symmetric: the pattern NNCF writes
        def fake_quantize(node: Any, low: float, high: float, levels: int) -> Any:
            bounds = [ops.constant(np.float32(v)) for v in (low, high, low, high)]
            return ops.fake_quantize(node, *bounds, levels)

        x, w = fake_quantize(x, 0.0, 4.0, 256), fake_quantize(w, -1.0, 1.0, 255)
    if operation == "matmul":
        result = ops.matmul(x, w, False, False)
    else:
        result = ops.convolution(x, w, [1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1])
    return ov.Model([result], [source], operation), shape, flops


def _best_seconds(call: Callable[[], object], repeat: int) -> float:
    call()  # warm up threads and caches
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _ran_as(compiled: Any) -> tuple[str, str]:
    """The runtime precision and oneDNN kernel of the compiled model's MatMul/Convolution node."""
    for node in compiled.get_runtime_model().get_ops():
        info = node.get_rt_info()
        if info["layerType"].astype(str) in ("MatMul", "FullyConnected", "Convolution"):
            return info["runtimePrecision"].astype(str), info["primitiveType"].astype(str)
    return "unknown", "unknown"


def library_peaks(threads: int | None = None, repeat: int = 5,
                  operations: tuple[str, ...] = ("matmul", "conv3d")) -> dict[str, Any] | None:
    """GFLOP/s of a large MatMul and 3D convolution per precision through OpenVINO's CPU plugin (oneDNN).

    Args:
        threads: inference threads, pinned (default: one per physical core).
        repeat: timed calls per operation (the best counts).
        operations: which operations to measure.

    Returns:
        ``{"library", "threads", "operations": {precision: {operation: {gflops, runtime_precision,
        kernel}}}}``, or ``None`` when OpenVINO is not installed.
    """
    ov = optional_module("openvino")
    if ov is None:
        return None
    threads = threads or cpu_spec().cores
    core = ov.Core()
    measured: dict[str, dict[str, Any]] = {}
    for precision in PRECISIONS:
        hint = "bf16" if precision == "bf16" else "f32"
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                  "ENABLE_CPU_PINNING": True}
        measured[precision] = {}
        for operation in operations:
            model, shape, flops = _one_operation(ov, operation, int8=precision == "int8")
            compiled = core.compile_model(model, "CPU", config)
            request = compiled.create_infer_request()
            data = np.abs(np.random.default_rng(1).standard_normal(shape)).astype(np.float32)
            seconds = _best_seconds(lambda request=request, data=data: request.infer({0: data}), repeat)
            runtime, kernel = _ran_as(compiled)
            measured[precision][operation] = {"gflops": flops / seconds / 1e9, "runtime_precision": runtime,
                                              "kernel": kernel}
    return {"library": f"OpenVINO {ov.__version__} CPU plugin (oneDNN)", "threads": threads, "pinned": True,
            "operations": measured}


def measured_peak(library: dict[str, Any] | None, precision: str) -> float | None:
    """The measured peak of ``precision``: the faster of its operations that really ran in it (``None`` if none
    did, e.g. bf16 on a CPU without bf16 instructions, or without OpenVINO)."""
    if library is None:
        return None
    runs = [run["gflops"] for run in library["operations"].get(precision, {}).values()
            if precision_of_runtime(run["runtime_precision"]) == precision]
    return max(runs) if runs else None


def machine_peaks(measure: bool = True) -> dict[str, Any]:
    """The peaks recorded in every bench results file.

    Returns:
        ``{"measured_gflops": {precision: GFLOP/s or None}, "library": library_peaks(...),
        "theoretical": theoretical_peaks(...), "measured_over_theoretical": {precision: ratio or None}}``.
    """
    library = library_peaks() if measure else None
    theoretical = theoretical_peaks(cpu_spec())
    measured = {precision: measured_peak(library, precision) for precision in PRECISIONS}
    ratios = {p: measured[p] / theoretical["gflops"][p] if measured[p] and theoretical["gflops"][p] else None
              for p in PRECISIONS}
    return {"measured_gflops": measured, "library": library, "theoretical": theoretical,
            "measured_over_theoretical": ratios}
