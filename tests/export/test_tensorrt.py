"""TensorRT: the builder and runner control flow against stand-ins (``tests/gpu_fakes``), the parts that
run without TensorRT, and the real build where TensorRT and a GPU exist.

The stand-ins enforce TensorRT's and CUDA's contracts (profiles, shapes, buffer bounds, pinned memory,
stream handles, timing-cache verification); the fake engine computes with ONNX Runtime, so these tests
check what is copied where and refused when, not TensorRT's numbers.
"""

import importlib.util
import json
import logging
import warnings

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import onnxruntime
from gpu_fakes import FakeCudaRuntime, FakeGpuMisuse, FakeTensorRT, install_cuda, install_tensorrt

from bratsx.contract import ModelContract, read_onnx_contract
from bratsx.errors import BratsxError
from bratsx.export.tensorrt_build import engine_from_onnx
from bratsx.runtime.tensorrt_backend import TrtBackend, _check_machine, import_tensorrt, sidecar_path

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
SIDECAR = {"tensorrt_version": "10.13.0.35", "compute_capability": "9.0", "gpu_name": "NVIDIA H100"}


@pytest.fixture(scope="module")
def fp16_onnx(tiny_onnx, tmp_path_factory):
    """The tiny model in fp16 with fp32 I/O, as bratsx export writes it for TensorRT."""
    from bratsx.export.fp16 import fp16_from_onnx

    return fp16_from_onnx(tiny_onnx, tmp_path_factory.mktemp("fp16") / "model.fp16.onnx")


@pytest.fixture
def gpu(monkeypatch):
    """A fake CUDA runtime and TensorRT installed as ``cuda.bindings`` and ``tensorrt``."""
    cuda = FakeCudaRuntime()
    trt = FakeTensorRT(cuda)
    install_cuda(monkeypatch, cuda)
    install_tensorrt(monkeypatch, trt)
    return cuda, trt


def build(fp16_onnx, folder, max_batch=2, **options):
    engine = folder / "model.engine"
    engine_from_onnx(fp16_onnx, engine, read_onnx_contract(fp16_onnx), max_batch=max_batch,
                     timing_cache=folder / "timing.cache", **options)
    return engine


def tiles(count, shape=(4, 16, 16, 16), seed=0):
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def onnx_runtime(model, batch):
    return onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"image": batch})[0]


# --- builder ----------------------------------------------------------------------------------------


def test_the_profile_is_tuned_for_the_batch_the_runner_sends(gpu, fp16_onnx, tmp_path):
    _, trt = gpu
    engine = build(fp16_onnx, tmp_path, max_batch=4)
    assert trt.builds[-1]["profile"]["image"] == [[1, 4, 16, 16, 16], [4, 4, 16, 16, 16], [4, 4, 16, 16, 16]]
    with TrtBackend(engine) as backend:
        assert backend.preferred_batch == 4
    sidecar = json.loads(sidecar_path(engine).read_text())
    assert sidecar["profile"]["opt"] == [4, 4, 16, 16, 16] and sidecar["compute_capability"] == "9.0"
    assert sidecar["contract"] == read_onnx_contract(fp16_onnx).to_dict()


def test_a_timing_cache_from_another_gpu_is_replaced_with_a_warning(gpu, fp16_onnx, tmp_path, caplog):
    _, trt = gpu
    foreign = {"device": "NVIDIA A100-SXM4-80GB sm_80", "version": trt.version, "entries": 7}
    (tmp_path / "timing.cache").write_text(json.dumps(foreign))
    with caplog.at_level(logging.WARNING, logger="bratsx.export.tensorrt_build"):
        engine = build(fp16_onnx, tmp_path)
    assert engine.exists() and "rejected this timing cache" in caplog.text
    assert json.loads((tmp_path / "timing.cache").read_text())["device"] == trt.device_key


def test_a_damaged_timing_cache_is_replaced(gpu, fp16_onnx, tmp_path):
    _, trt = gpu
    (tmp_path / "timing.cache").write_bytes(b"\x00not a timing cache")
    build(fp16_onnx, tmp_path)
    assert json.loads((tmp_path / "timing.cache").read_text())["device"] == trt.device_key


def test_a_usable_timing_cache_is_reused_and_updated(gpu, fp16_onnx, tmp_path):
    _, trt = gpu
    build(fp16_onnx, tmp_path)
    build(fp16_onnx, tmp_path)
    assert json.loads((tmp_path / "timing.cache").read_text())["entries"] == 2


@pytest.mark.parametrize("max_batch, opt_batch", [(0, None), (4, 5), (4, 0)])
def test_an_impossible_batch_profile_is_refused(gpu, fp16_onnx, tmp_path, max_batch, opt_batch):
    with pytest.raises(BratsxError, match="opt_batch <= max_batch"):
        build(fp16_onnx, tmp_path, max_batch=max_batch, opt_batch=opt_batch)


def test_a_graph_that_contradicts_the_contract_is_refused(gpu, fp16_onnx, tmp_path):
    contract = read_onnx_contract(fp16_onnx)
    other = ModelContract.from_dict({**contract.to_dict(), "patch_size": [8, 8, 8]})
    with pytest.raises(BratsxError, match=r"contract needs 'image' \[N, 4, 8, 8, 8\]"):
        engine_from_onnx(fp16_onnx, tmp_path / "model.engine", other)


# --- runner -----------------------------------------------------------------------------------------


def test_batches_run_through_pinned_buffers_in_chunks_of_the_profile(gpu, fp16_onnx, tmp_path):
    cuda, _ = gpu
    engine = build(fp16_onnx, tmp_path, max_batch=2)
    batch = tiles(3)
    with TrtBackend(engine) as backend:
        output = backend.run(batch)
    # the stand-in engine is ONNX Runtime on the fp16 model, whose kernels round differently per batch size
    np.testing.assert_allclose(output, onnx_runtime(fp16_onnx, batch), atol=2e-3)
    tile, probabilities = 4 * 16**3 * 4, 3 * 16**3 * 4  # bytes per tile in, per tile out
    assert cuda.copies == [("cudaMemcpyHostToDevice", 2 * tile), ("cudaMemcpyDeviceToHost", 2 * probabilities),
                           ("cudaMemcpyHostToDevice", tile), ("cudaMemcpyDeviceToHost", probabilities)]


@pytest.mark.parametrize("shape", [(1, 4, 8, 8, 8), (2, 4, 24, 24, 24), (1, 3, 16, 16, 16), (4, 16, 16, 16)])
def test_tiles_of_another_shape_are_refused_before_any_copy(gpu, fp16_onnx, tmp_path, shape):
    cuda, _ = gpu
    with TrtBackend(build(fp16_onnx, tmp_path)) as backend:
        with pytest.raises(BratsxError, match=r"takes tiles of shape \(N, 4, 16, 16, 16\)"):
            backend.run(np.zeros(shape, np.float32))
    assert cuda.copies == []


def test_an_empty_batch_gives_an_empty_result(gpu, fp16_onnx, tmp_path):
    with TrtBackend(build(fp16_onnx, tmp_path)) as backend:
        assert backend.run(tiles(0)).shape == (0, 3, 16, 16, 16)


def test_the_stream_goes_to_tensorrt_as_a_native_handle_not_int(gpu, fp16_onnx, tmp_path):
    engine = build(fp16_onnx, tmp_path)
    with TrtBackend(engine) as backend, warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # int(stream) is deprecated in cuda-bindings 13
        backend.run(tiles(1))


def test_older_cuda_python_without_native_handles_falls_back_to_int(gpu, fp16_onnx, tmp_path, monkeypatch):
    cuda, _ = gpu
    engine = build(fp16_onnx, tmp_path)
    install_cuda(monkeypatch, cuda, native_handle=False)
    with TrtBackend(engine) as backend, pytest.deprecated_call():
        assert backend.run(tiles(1)).shape == (1, 3, 16, 16, 16)


def test_the_engines_contract_is_its_sidecars_and_is_checked_against_the_engine(gpu, fp16_onnx, tmp_path):
    engine = build(fp16_onnx, tmp_path)
    sidecar = json.loads(sidecar_path(engine).read_text())
    with TrtBackend(engine) as backend:
        assert backend.contract == ModelContract.from_dict(sidecar["contract"])
        assert backend.input_shape == (None, 4, 16, 16, 16) and backend.output_shape == (None, 3, 16, 16, 16)
    sidecar["contract"]["patch_size"] = [8, 8, 8]
    sidecar_path(engine).write_text(json.dumps(sidecar))
    with pytest.raises(BratsxError, match="does not describe this engine"):
        TrtBackend(engine)
    sidecar_path(engine).write_text(json.dumps({"format": "a model folder's model.json"}))
    with pytest.raises(BratsxError, match="not an engine sidecar .*tensorrt_version"):
        TrtBackend(engine)


def test_close_frees_every_buffer_and_the_stream_once(gpu, fp16_onnx, tmp_path):
    cuda, _ = gpu
    backend = TrtBackend(build(fp16_onnx, tmp_path))
    backend.run(tiles(1))
    assert cuda.live_allocations() == 5  # 2 device + 2 pinned buffers + 1 stream
    backend.close()
    backend.close()
    assert cuda.live_allocations() == 0


def test_fp16_engine_io_is_fed_and_read_in_the_engines_dtype(gpu, tiny_onnx, tmp_path):
    import onnx
    from onnxconverter_common import float16

    half_io = tmp_path / "half_io.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        onnx.save(float16.convert_float_to_float16(onnx.load(str(tiny_onnx)), keep_io_types=False), str(half_io))
    engine = tmp_path / "model.engine"
    engine_from_onnx(half_io, engine, read_onnx_contract(tiny_onnx), max_batch=2)
    batch = tiles(2)
    with TrtBackend(engine) as backend:
        output = backend.run(batch)
    assert output.dtype == np.float32
    np.testing.assert_array_equal(output, onnx_runtime(half_io, batch.astype(np.float16)).astype(np.float32))


def test_an_engine_of_another_gpu_is_refused_before_deserializing(gpu, fp16_onnx, tmp_path, monkeypatch):
    engine = build(fp16_onnx, tmp_path)
    other = FakeCudaRuntime(name=b"NVIDIA A100-SXM4-80GB", capability=(8, 0))
    install_cuda(monkeypatch, other)
    with pytest.raises(BratsxError, match=r"compute capability 9.0 \(NVIDIA H100 80GB HBM3; this machine: 8.0\)"):
        TrtBackend(engine)


@pytest.mark.parametrize("error, driver, runtime, message", [
    (35, 12040, 13000, r"driver supports CUDA 12.4, older than CUDA 13.0: update .* pip install 'bratsx\[trt-cu12\]'"),
    (35, 0, 12080, r"no usable NVIDIA driver \(libcuda cannot be loaded\)"),
    (100, 12080, 12080, r"no CUDA GPU is visible: check nvidia-smi and CUDA_VISIBLE_DEVICES"),
    (34, 12080, 12080, r"stub library"),
])
def test_driver_failures_become_one_line_saying_what_to_do(monkeypatch, fp16_onnx, tmp_path, error, driver, runtime,
                                                           message):
    cuda = FakeCudaRuntime(device_count_error=error, driver_version=driver, runtime_version=runtime)
    install_cuda(monkeypatch, cuda)
    install_tensorrt(monkeypatch, FakeTensorRT(cuda))
    for attempt in (lambda: TrtBackend(tmp_path / "model.engine"), lambda: build(fp16_onnx, tmp_path)):
        with pytest.raises(BratsxError, match=message) as caught:
            attempt()
        assert "\n" not in str(caught.value)


def test_the_fakes_catch_an_overrun_copy(gpu):
    cuda, _ = gpu
    _, device = cuda.cudaMalloc(16)
    _, host = cuda.cudaMallocHost(32)
    _, stream = cuda.cudaStreamCreate()
    with pytest.raises(FakeGpuMisuse, match="overruns"):
        cuda.cudaMemcpyAsync(device, host, 32, 1, stream)


# --- without TensorRT -------------------------------------------------------------------------------


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
    assert report.engine.exists() and sidecar_path(report.engine).exists()
    assert report.engine_gate.passed


@pytest.mark.slow
def test_export_trt_builds_gates_and_records_an_engine_with_the_stand_ins(gpu, tiny_run, tmp_path):
    from bratsx.export.pipeline import ExportOptions, export_model

    _, trt = gpu
    report = export_model(tiny_run, tmp_path / "model", ExportOptions(trt=True, max_batch=2, calibration_cases=1))
    assert report.engine.exists() and sidecar_path(report.engine).exists()
    assert report.engine_gate.passed and trt.executions > 0  # the gate ran through the runner
    assert (tmp_path / "timing.cache").exists()  # the timing cache is kept beside the model folder
    with TrtBackend(report.engine) as backend:  # the folder's model.json does not replace the engine's sidecar
        assert backend.contract.patch_size == (16, 16, 16)


def test_infer_refuses_the_box_window_on_an_engine_before_any_case(gpu, fp16_onnx, tmp_path):
    from typer.testing import CliRunner

    from bratsx.cli.app import app
    from bratsx.synth import write_synthetic_dataset

    engine = build(fp16_onnx, tmp_path)
    write_synthetic_dataset(tmp_path / "cases", cases=1, shape=(24, 24, 20), seed=2)
    result = CliRunner().invoke(app, ["infer", str(tmp_path / "cases"), "--model", str(engine), "--backend", "trt",
                                      "--window", "box", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "--window box: the trt backend runs only its tile shape" in result.output
    assert not any((tmp_path / "out").glob("*.nii.gz"))  # refused before any case was segmented
