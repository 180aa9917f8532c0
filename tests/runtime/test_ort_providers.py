"""ONNX Runtime providers on CUDA: the provider list and the check that the session loaded them.

No GPU here: ``onnxruntime`` is replaced by a stand-in that says which providers it was built with,
and sessions by stand-ins that say which providers loaded (a session without its CUDA libraries
loads only the CPU provider, as onnxruntime-gpu does).
"""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bratsx.errors import BratsxError
from bratsx.runtime import ort_providers as module
from bratsx.runtime.ort_providers import CPU, CUDA, TENSORRT, check_session_providers, ort_providers

PATCH = (128, 128, 128)


def fake_ort(*providers, version="1.22.0", cuda_version="12.8"):
    calls = []
    return SimpleNamespace(get_available_providers=lambda: [*providers, CPU], __version__=version,
                           cuda_version=cuda_version, preload_dlls=lambda: calls.append("preload"), calls=calls)


def session(*providers):
    return SimpleNamespace(get_providers=lambda: list(providers))


def test_cpu_needs_only_the_cpu_provider():
    assert ort_providers(fake_ort(), Path("m.onnx"), "cpu", False, 4, PATCH) == [CPU]


def test_cuda_puts_the_cuda_provider_first_and_preloads_pip_installed_libraries():
    ort = fake_ort(CUDA)
    providers = ort_providers(ort, Path("m.onnx"), "cuda", False, 4, PATCH)
    assert [p[0] if isinstance(p, tuple) else p for p in providers] == [CUDA, CPU]
    assert ort.calls == ["preload"]


def test_ort_tensorrt_is_refused_on_the_cpu_instead_of_ignored():
    with pytest.raises(BratsxError, match="--ort-tensorrt needs --device cuda"):
        ort_providers(fake_ort(CUDA, TENSORRT), Path("m.onnx"), "cpu", True, 4, PATCH)


def test_ort_tensorrt_gets_an_explicit_batch_profile_and_no_fp16_unless_gated(tmp_path):
    providers = ort_providers(fake_ort(TENSORRT, CUDA), tmp_path / "model.onnx", "cuda", True, 4, PATCH)
    name, options = providers[0]
    assert name == TENSORRT and [p[0] if isinstance(p, tuple) else p for p in providers[1:]] == [CUDA, CPU]
    assert options["trt_profile_min_shapes"] == "image:1x4x128x128x128"
    assert options["trt_profile_opt_shapes"] == options["trt_profile_max_shapes"] == "image:4x4x128x128x128"
    assert options["trt_fp16_enable"] is False
    assert options["trt_engine_cache_path"] == str(tmp_path / "ort-trt-cache")
    gated = ort_providers(fake_ort(TENSORRT, CUDA), tmp_path / "model.onnx", "cuda", True, 4, PATCH, fp16=True)
    assert gated[0][1]["trt_fp16_enable"] is True


@pytest.mark.parametrize("available, device, tensorrt, message", [
    ((), "cuda", False, r"no CUDA execution provider here.*bratsx\[gpu\]"),
    ((CUDA,), "cuda", True, "no TensorRT execution provider"),
    ((CUDA,), "gpu", False, "must be cpu or cuda"),
])
def test_providers_the_package_lacks_are_named(available, device, tensorrt, message):
    with pytest.raises(BratsxError, match=message):
        ort_providers(fake_ort(*available), Path("m.onnx"), device, tensorrt, 4, PATCH)


def test_a_session_that_loaded_its_providers_passes():
    check_session_providers(session(CUDA, CPU), "cuda", False)
    check_session_providers(session(TENSORRT, CUDA, CPU), "cuda", True)
    check_session_providers(session(CPU), "cpu", False)


@pytest.fixture
def installed_ort(monkeypatch):
    """The onnxruntime module check_session_providers consults: onnxruntime-gpu 1.22 built for CUDA 12.8."""
    ort = fake_ort(CUDA, version="1.22.0", cuda_version="12.8")
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    monkeypatch.setattr(sys, "platform", "linux")
    return ort


def test_a_cuda_session_that_fell_back_to_the_cpu_names_the_missing_library(installed_ort, monkeypatch):
    monkeypatch.setattr(module, "_loads", lambda soname: soname != "libcudnn.so.9")
    with pytest.raises(BratsxError) as caught:
        check_session_providers(session(CPU), "cuda", False)
    message = str(caught.value)
    assert "did not load CUDAExecutionProvider (the session runs on CPUExecutionProvider)" in message
    assert "needs CUDA 12.x and cuDNN 9.x; cannot load libcudnn.so.9" in message
    assert "libcublas" not in message


def test_a_cuda_13_build_is_diagnosed_with_cuda_13_libraries(installed_ort, monkeypatch):
    installed_ort.cuda_version = "13.0"
    monkeypatch.setattr(module, "_loads", lambda soname: soname not in ("libcublasLt.so.13", "libcufft.so.12"))
    with pytest.raises(BratsxError, match=r"CUDA 13.x and cuDNN 9.x; cannot load libcublasLt.so.13, libcufft.so.12"):
        check_session_providers(session(CPU), "cuda", False)


def test_no_driver_is_named_as_such(installed_ort, monkeypatch):
    monkeypatch.setattr(module, "_loads", lambda soname: soname != "libcuda.so.1")
    with pytest.raises(BratsxError, match=r"no NVIDIA driver \(libcuda.so.1 cannot be loaded\)"):
        check_session_providers(session(CPU), "cuda", False)


def test_a_tensorrt_provider_that_did_not_load_is_named(installed_ort):
    with pytest.raises(BratsxError, match=r"did not load TensorrtExecutionProvider .*libnvinfer"):
        check_session_providers(session(CUDA, CPU), "cuda", True)


@pytest.mark.parametrize("version, cuda_version, expected", [
    ("1.18.1", "", (11, 8)), ("1.20.1", "", (12, 9)), ("1.24.4", "13.0", (13, 9)), ("1.19.0", "12.2", (12, 9)),
])
def test_cuda_and_cudnn_requirements_follow_the_onnxruntime_build(version, cuda_version, expected):
    assert module._cuda_requirements(fake_ort(version=version, cuda_version=cuda_version)) == expected
