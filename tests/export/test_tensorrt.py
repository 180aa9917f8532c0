"""TensorRT: the parts that run without TensorRT here, and the build itself where TensorRT and a GPU exist."""

import importlib.util

import pytest

from bratsx.errors import BratsxError
from bratsx.runtime.tensorrt_backend import _check_machine, import_tensorrt

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
SIDECAR = {"tensorrt_version": "10.13.0.35", "compute_capability": "9.0", "gpu_name": "NVIDIA H100"}


def test_missing_tensorrt_says_how_to_install_it():
    if HAS_TENSORRT:
        pytest.skip("TensorRT is installed here")
    with pytest.raises(BratsxError, match=r"TensorRT is not installed: pip install 'bratsx\[trt\]'"):
        import_tensorrt()


def test_an_engine_from_another_tensorrt_or_gpu_is_refused_with_the_rebuild_command(tmp_path):
    engine = tmp_path / "model.engine"
    _check_machine(engine, SIDECAR, "10.13.0.35", "9.0")  # the same machine: accepted
    with pytest.raises(BratsxError, match=r"TensorRT 10.13.0.35 \(this machine: 10.9.0.34\).*bratsx export"):
        _check_machine(engine, SIDECAR, "10.9.0.34", "9.0")
    with pytest.raises(BratsxError, match=r"compute capability 9.0 \(NVIDIA H100; this machine: 8.6\)"):
        _check_machine(engine, SIDECAR, "10.13.0.35", "8.6")


@pytest.mark.trt
@pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT is not installed (pip install 'bratsx[trt]'; needs a CUDA GPU)")
def test_fp16_engine_builds_and_passes_the_gate(tiny_run, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from bratsx.export.pipeline import ExportOptions, export_model

    report = export_model(tiny_run, tmp_path, ExportOptions(trt=True, max_batch=4))
    assert report.engine.exists() and report.engine.with_suffix(".json").exists()
    assert report.engine_gate.passed
