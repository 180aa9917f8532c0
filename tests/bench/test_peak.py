"""The peaks' bookkeeping: the theoretical peak from the CPU's description, which measured run counts as a
precision's peak, and which peak a bench row is divided by (no timing is asserted)."""

import pytest

from bratsx.bench import peak
from bratsx.bench.peak import CpuSpec, cpu_spec, flop_per_cycle, measured_peak, theoretical_peaks
from bratsx.bench.run import _summarise, peak_gflops, peak_precision

ZEN4_FLAGS = "fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni"
CPUINFO = "".join(f"processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\ncpu MHz\t\t: {mhz}\n"
                  f"flags\t\t: {ZEN4_FLAGS}\n\n" for n, mhz in ((0, 2500.0), (1, 2700.0)))


def _spec(vendor: str, family: int, flags: str) -> CpuSpec:
    return CpuSpec(vendor=vendor, family=family, flags=frozenset(flags.split()), cores=2, mhz=2000.0, mhz_source="t")


def test_cpu_spec_reads_cores_from_lscpu_and_the_clock_from_cpuinfo_without_a_maximum():
    spec = cpu_spec(CPUINFO, {"Core(s) per socket": "2", "Socket(s)": "1"})
    assert (spec.vendor, spec.family, spec.cores, spec.mhz) == ("AuthenticAMD", 25, 2, 2600.0)
    assert {"avx512_bf16", "avx512_vnni"} <= spec.flags and "cpuinfo" in spec.mhz_source
    assert cpu_spec(CPUINFO, {"Core(s) per socket": "8", "Socket(s)": "2", "CPU max MHz": "3700.0"}).mhz == 3700.0
    assert cpu_spec(CPUINFO, {"Core(s) per socket": "8", "Socket(s)": "2", "CPU max MHz": "3700.0"}).cores == 16


@pytest.mark.parametrize(("vendor", "family", "flags", "expected"), [
    ("AuthenticAMD", 25, ZEN4_FLAGS, {"fp32": 32, "bf16": 64, "int8": 128}),  # AVX-512 on 256-bit pipes
    ("AuthenticAMD", 26, ZEN4_FLAGS, {"fp32": 64, "bf16": 128, "int8": 256}),  # Zen 5: full 512-bit
    ("GenuineIntel", 6, "avx2 fma avx512f avx512_vnni amx_bf16 amx_int8", {"fp32": 64, "bf16": 2048, "int8": 4096}),
    ("GenuineIntel", 6, "avx avx2 fma", {"fp32": 32, "bf16": None, "int8": None}),
    ("GenuineIntel", 6, "sse2", {"fp32": None, "bf16": None, "int8": None}),
])
def test_flop_per_cycle_follows_the_fma_width_and_the_precision_instructions(vendor, family, flags, expected):
    rates = flop_per_cycle(_spec(vendor, family, flags))
    assert {precision: rate for precision, (rate, _) in rates.items()} == expected
    assert all(why for _, why in rates.values())


def test_theoretical_peak_is_cores_times_clock_times_flop_per_cycle():
    peaks = theoretical_peaks(_spec("AuthenticAMD", 25, ZEN4_FLAGS))
    assert peaks["gflops"] == {"fp32": 128.0, "bf16": 256.0, "int8": 512.0}  # 2 cores x 2 GHz x 32/64/128
    assert "2 cores x 2000 MHz x 32" in peaks["basis"]["fp32"] and "avx512_bf16" in peaks["flags"]
    assert theoretical_peaks(_spec("GenuineIntel", 6, "avx2 fma"))["gflops"]["bf16"] is None


def _run(gflops: float, runtime: str) -> dict:
    return {"gflops": gflops, "runtime_precision": runtime, "kernel": "k"}


def test_a_precisions_peak_counts_only_operations_that_really_ran_in_it():
    library = {"operations": {
        "fp32": {"matmul": _run(100.0, "f32"), "conv3d": _run(120.0, "f32")},
        "bf16": {"matmul": _run(90.0, "f32"), "conv3d": _run(95.0, "f32")},  # no bf16 unit: ran as f32
        "int8": {"matmul": _run(300.0, "u8"), "conv3d": _run(250.0, "i8")}}}
    assert measured_peak(library, "fp32") == 120.0  # the faster operation
    assert measured_peak(library, "bf16") is None
    assert measured_peak(library, "int8") == 300.0
    assert measured_peak(None, "fp32") is None


@pytest.mark.parametrize(("backend_precision", "judged_by"),
                         [("f32", "fp32"), ("fp32", "fp32"), ("fp16", "fp32"), ("bf16", "bf16"), ("int8", "int8")])
def test_each_row_is_divided_by_the_measured_peak_of_its_precision(backend_precision, judged_by):
    assert peak_precision(backend_precision) == judged_by
    raw = {"device": "cpu", "precision": backend_precision, "build_s": 0.1, "sw_batch": 1, "tiles_per_s": 2.0,
           "case_seconds": [{"load": 1.0, "inference": 3.0}], "directory_wall_s": [4.0]}
    peaks = {"fp32": 100.0, "bf16": 200.0, "int8": 400.0}
    summary = _summarise(raw, flops=50e9, peaks=peaks, patch_voxels=8, cases=1)
    assert summary["effective_gflops"] == 100.0 and summary["peak_precision"] == judged_by
    assert summary["fraction_of_peak"] == pytest.approx(100.0 / peaks[judged_by])
    assert _summarise({**raw, "device": "cuda"}, 50e9, peaks, 8, 1)["fraction_of_peak"] is None


def test_reports_of_both_rounds_give_their_peaks():
    assert peak_gflops({"peaks": {"measured_gflops": {"fp32": 1.0}}}) == {"fp32": 1.0}
    assert peak_gflops({"cpu_gemm_peak_gflops": {"fp32": 2.0, "bf16": 3.0}}) == {"fp32": 2.0, "bf16": 3.0}


def test_library_peaks_record_what_each_precision_ran_in(monkeypatch):
    """At toy sizes (not a timing): OpenVINO's f32 ran in f32 and the FakeQuantized models as int8 kernels."""
    pytest.importorskip("openvino")
    monkeypatch.setattr(peak, "MATMUL_SIZE", 64)
    monkeypatch.setattr(peak, "CONV_SIDE", 8)
    library = peak.library_peaks(repeat=1)
    assert library["pinned"] and library["threads"] >= 1 and "oneDNN" in library["library"]
    for operation in ("matmul", "conv3d"):
        assert library["operations"]["fp32"][operation]["runtime_precision"] == "f32"
        assert library["operations"]["int8"][operation]["runtime_precision"] in ("u8", "i8")
        assert library["operations"]["fp32"][operation]["gflops"] > 0
    assert measured_peak(library, "int8") is not None
