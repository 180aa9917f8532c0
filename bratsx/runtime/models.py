"""Opening a model: one function from what the user named (a model folder, a file, a run directory) and a
backend name to a running backend and the contract it follows.

Every consumer (``bratsx infer``, ``bench``, ``serve``, the Ray actors) calls :func:`open_model`, so the
backend choice, the file a model folder holds for each backend, and the check that the model file
really computes what its contract says live here alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..choices import look_up
from ..contract import ModelContract, read_onnx_contract
from ..devices import installed, ort_cuda_available, tensorrt_available, torch_cuda_available
from ..errors import BratsxError
from ..modelfolder import ModelFolder, find_model_folder
from .backends import Backend, BackendName, OpenVinoBackend, OrtBackend, TorchBackend, TorchOptions

__all__ = ["OpenedModel", "choose_backend", "open_model"]

_ONNX_BACKENDS = (BackendName.ORT, BackendName.OPENVINO, BackendName.OPENVINO_BF16)
#: OpenVINO's precision for each of its backend names.
_OPENVINO_PRECISION = {BackendName.OPENVINO: "f32", BackendName.OPENVINO_BF16: "bf16",
                       BackendName.OPENVINO_INT8: "int8"}


@dataclass(frozen=True)
class OpenedModel:
    """A backend ready to run, the contract it follows, and the file it runs.

    Closing it (or leaving its ``with`` block) closes the backend.
    """

    backend: Backend
    contract: ModelContract
    file: Path

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> OpenedModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _is_checkpoint(path: Path) -> bool:
    return path.is_dir() or path.suffix in (".pt", ".pth")


def choose_backend(model: Path, folder: ModelFolder | None) -> tuple[BackendName, str]:
    """The fastest installed backend that runs a model at full precision (fp32, or a gated engine), and its device.

    TensorRT for an engine (named, or in the folder with TensorRT installed); ONNX Runtime on CUDA
    when onnxruntime-gpu sees a GPU; then OpenVINO (f32); then ONNX Runtime on the CPU; PyTorch for a
    checkpoint or run directory (on CUDA when visible).
    """
    if model.suffix == ".engine" or (folder and folder.file("engine") and tensorrt_available()):
        return BackendName.TRT, "cuda"
    if folder is None and _is_checkpoint(model):
        return BackendName.TORCH, "cuda" if torch_cuda_available() else "cpu"
    if ort_cuda_available():
        return BackendName.ORT, "cuda"
    return (BackendName.OPENVINO if installed("openvino") else BackendName.ORT), "cpu"


def _file_for(model: Path, folder: ModelFolder | None, backend: BackendName, device: str) -> Path:
    """The file ``backend`` runs: the one named when it suits the backend, else the folder's."""
    suits = {BackendName.TRT: model.suffix == ".engine", BackendName.TORCH: _is_checkpoint(model) and folder is None,
             BackendName.OPENVINO_INT8: False}  # the int8 IR's contract is its folder's
    if suits.get(backend, model.suffix == ".onnx") and (model.is_file() or backend is BackendName.TORCH):
        return model
    if folder is None:
        wanted = {BackendName.TRT: "an .engine file (bratsx export --trt)",
                  BackendName.TORCH: "a checkpoint or run directory",
                  BackendName.OPENVINO_INT8: "a model folder exported with bratsx export --int8",
                  }.get(backend, "an .onnx file (bratsx export)")
        raise BratsxError(f"{model}: the {backend.value} backend takes {wanted}")
    if backend is BackendName.TRT:
        found, flag = folder.file("engine"), "--trt"
    elif backend is BackendName.OPENVINO_INT8:
        found, flag = folder.file("int8"), "--int8"
    elif backend is BackendName.TORCH:  # an imported folder's networks are rebuilt from its recorded source
        found, flag = folder.checkpoint or (folder.path if folder.imported_from else None), None
    else:
        gated = folder.file("fp16") if backend is BackendName.ORT and device.startswith("cuda") else None
        found, flag = gated or folder.file("fp32"), ""
    if found is None:
        if flag is None:
            raise BratsxError(f"model {folder.path}: the checkpoint it was exported from is not recorded or no longer "
                              "exists; give the run directory to --model for the torch backend")
        raise BratsxError(f"model {folder.path} has no file for the {backend.value} backend; build it with "
                          f"bratsx export {flag}".rstrip())
    return found


def _check_fits(backend: Backend, contract: ModelContract, path: Path) -> None:
    """Refuse, once, a model file whose graph does not compute what its contract says."""
    expected_in = (len(contract.modality_order), *contract.patch_size)
    expected_out = (len(contract.channel_names), *contract.patch_size)
    problems = []
    for what, shape, expected in (("input", backend.input_shape, expected_in),
                                  ("output", backend.output_shape, expected_out)):
        if len(shape) != 1 + len(expected):
            problems.append(f"{what} has {len(shape)} dimensions, the contract implies {1 + len(expected)}")
            continue
        for got, want, axis in zip(shape[1:], expected, ("channels", "z", "y", "x")):
            if got is not None and got != want:
                problems.append(f"{what} {axis} is {got}, the contract says {want}")
    if problems:
        raise BratsxError(f"{path}: the model does not match its contract ({'; '.join(problems)}); "
                          "re-export it with bratsx export")


def open_model(
    model: Path | str,
    backend: BackendName | str = BackendName.AUTO,
    *,
    device: str = "cpu",
    threads: int | None = None,
    ort_tensorrt: bool = False,
    torch_options: TorchOptions | None = None,
) -> OpenedModel:
    """Open ``model`` with ``backend``.

    Args:
        model: a model folder (or any file in one), an ``.onnx`` file, an ``.engine`` file, or a
            checkpoint or run directory (torch backend).
        backend: a :class:`BackendName`; ``auto`` picks the fastest installed at full precision, and
            its device, ignoring ``device`` (see :func:`choose_backend`).
        device: ``cpu`` or ``cuda``, for the ort and torch backends.
        threads: CPU threads (ort, openvino).
        ort_tensorrt: ort on CUDA: put ONNX Runtime's TensorRT execution provider first.
        torch_options: the torch backend's autocast, memory format and compilation.

    Returns:
        The open backend, the model's contract and the file it runs.

    Raises:
        BratsxError: an unknown backend, a missing file for the backend (naming the export flag that
            builds it), a backend that is not installed (naming the extra), or a model whose graph
            contradicts its contract.
    """
    model = Path(model)
    name = look_up(BackendName, backend, "backend")
    folder = find_model_folder(model)
    if folder is not None and folder.info.get("members"):  # an ensemble folder: its members, logits averaged
        from .ensemble import open_ensemble_folder

        return open_ensemble_folder(folder, lambda member: open_model(
            member, name, device=device, threads=threads, ort_tensorrt=ort_tensorrt, torch_options=torch_options))
    if name is BackendName.AUTO:
        name, device = choose_backend(model, folder)
    path = _file_for(model, folder, name, device)
    tuned = folder.postprocess if folder is not None else None
    if name is BackendName.TORCH:
        opened: Backend = TorchBackend(path, device=device, options=torch_options)
        contract = opened.contract
    elif name is BackendName.TRT:
        from .tensorrt_backend import TrtBackend

        opened = TrtBackend(path)
        contract = opened.contract  # the engine's own, from its sidecar
    elif name is BackendName.OPENVINO_INT8:
        contract = folder.contract  # _file_for found the IR in a model folder
        opened = OpenVinoBackend(path, threads, "int8")
    else:
        contract = read_onnx_contract(path)
        if name is BackendName.ORT:
            opened = OrtBackend(path, threads, device, ort_tensorrt, patch=contract.patch_size)
        else:
            opened = OpenVinoBackend(path, threads, _OPENVINO_PRECISION[name])
    if tuned is not None:  # a folder's tuned spec replaces the one exported into the file
        contract = replace(contract, postprocess=tuned.to_dict())
    try:
        _check_fits(opened, contract, path)
    except BratsxError:
        opened.close()
        raise
    return OpenedModel(opened, contract, path)
