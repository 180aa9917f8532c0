"""``bratsx infer``: segment a directory of cases with one or more exported models."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..cases import Layout, discover_cases
from ..errors import BratsxError
from ..labels import LabelConvention
from .common import console, err_console, progress_bar, reports_errors


class BackendChoice(str, Enum):
    AUTO = "auto"
    ORT = "ort"
    OPENVINO = "openvino"
    TORCH = "torch"
    TRT = "trt"


def _auto_backend(model: Path) -> tuple[BackendChoice, str]:
    """The fastest installed backend for a model file, and its device.

    TensorRT for engines; for ONNX files ONNX Runtime on CUDA when onnxruntime-gpu sees a GPU, then
    OpenVINO, then ONNX Runtime on the CPU; PyTorch for checkpoints (CUDA when available).
    """
    import importlib.util

    if model.suffix == ".engine":
        return BackendChoice.TRT, "cuda"
    if model.suffix != ".onnx":
        import torch

        return BackendChoice.TORCH, "cuda" if torch.cuda.is_available() else "cpu"
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return BackendChoice.ORT, "cuda"
    return (BackendChoice.OPENVINO if importlib.util.find_spec("openvino") else BackendChoice.ORT), "cpu"


def _open(choice: BackendChoice, model: Path, threads: Optional[int], device: str, ort_tensorrt: bool):
    """A backend and the model's contract."""
    from ..contract import ModelContract, read_onnx_contract
    from ..runtime import backends

    if choice is BackendChoice.AUTO:
        choice, device = _auto_backend(model)
    if choice is BackendChoice.TORCH:
        backend = backends.TorchBackend(model, device=device)
        return backend, backend.contract
    if choice is BackendChoice.TRT:
        from ..runtime.tensorrt_backend import TrtBackend

        backend = TrtBackend(model)
        return backend, ModelContract.from_dict(backend.sidecar["contract"])
    if model.suffix != ".onnx":
        raise BratsxError(f"{model}: the {choice.value} backend takes an .onnx file made by bratsx export")
    contract = read_onnx_contract(model)
    if choice is BackendChoice.ORT:
        return backends.OrtBackend(model, threads, device, ort_tensorrt), contract
    return backends.OpenVinoBackend(model, threads), contract


def _references(labels_dir: Path) -> dict[str, Path]:
    """Reference label files by case id: ``<id>.nii[.gz]`` files or case folders holding a seg file."""
    from ..cases import nifti_stem

    found = {}
    for path in sorted(labels_dir.iterdir()):
        if path.is_file() and nifti_stem(path):
            found[nifti_stem(path)] = path
        elif path.is_dir():
            segs = [p for p in path.iterdir() if p.is_file() and "seg" in (nifti_stem(p) or "").lower()]
            if len(segs) == 1:
                found[path.name] = segs[0]
    return found


@reports_errors
def infer(
    cases_dir: Annotated[Path, typer.Argument(help="Directory of cases (any layout), or one case folder.",
                                              exists=True, file_okay=False)],
    model: Annotated[list[Path], typer.Option(
        "--model", "-m", help="Model: .onnx (ort, openvino), .engine (trt) or checkpoint/run dir (torch). "
                              "Repeat to average an ensemble.", exists=True)],
    backend: Annotated[BackendChoice, typer.Option(case_sensitive=False, help="Inference engine; auto picks the "
                                                   "fastest installed.")] = BackendChoice.AUTO,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder. [default: CASES_DIR-predictions]",
                                                file_okay=False, show_default=False)] = None,
    overlap: Annotated[float, typer.Option(min=0.0, max=0.95, help="Sliding-window overlap.")] = 0.5,
    sw_batch: Annotated[Optional[int], typer.Option(
        min=1, help="Tiles per backend call. [default: 1 on CPU, 4 on GPU, the engine's largest for TensorRT]",
        show_default=False)] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average all 8 mirrorings of every tile (8x the work).")] = False,
    convention: Annotated[Optional[LabelConvention], typer.Option(
        case_sensitive=False, help="Label values of the outputs. [default: each input's own]",
        show_default=False)] = None,
    save_probabilities: Annotated[bool, typer.Option("--save-probabilities",
                                                     help="Also write float16 probabilities.")] = False,
    min_component_voxels: Annotated[int, typer.Option(min=0, help="Remove tumour components smaller than this.")] = 0,
    et_to_ncr_below: Annotated[int, typer.Option(min=0, help="Relabel ET as necrotic core when fewer ET voxels "
                                                             "than this are predicted.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Predict cases whose output exists.")] = False,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Reference labels, if not in the case folders.",
                                                   exists=True, file_okay=False, show_default=False)] = None,
    layout: Annotated[Optional[Layout], typer.Option(case_sensitive=False, help="Force the case layout.",
                                                     show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads. [default: all cores]",
                                                   show_default=False)] = None,
    device: Annotated[str, typer.Option(help="ort and torch backends: cpu or cuda (auto chooses itself).")] = "cpu",
    ort_tensorrt: Annotated[bool, typer.Option("--ort-tensorrt", help="ort on cuda: use ONNX Runtime's TensorRT "
                                               "execution provider (fp16).")] = False,
) -> None:
    """Segment every case in CASES_DIR and write OUT/<case_id>.nii.gz in each input's geometry.

    Where a case has a reference segmentation (or --labels has one), Dice, sensitivity, specificity,
    HD95 and volumes per region go to OUT/metrics.csv; OUT/summary.json has the latency per stage.
    Existing outputs are skipped, so a rerun resumes. A bad case is reported and the others finish;
    the exit code is then 1.
    """
    from ..runtime.infer import InferOptions, infer_cases
    from ..runtime.summary import write_summary

    cases = discover_cases(cases_dir, layout)
    opened = [_open(backend, path, threads, device, ort_tensorrt) for path in model]
    contract = opened[0][1]
    if any(c.patch_size != contract.patch_size or c.output_mode != contract.output_mode for _, c in opened):
        raise BratsxError("the models of an ensemble must share their patch size and output mode")
    out = out or cases_dir.parent / f"{cases_dir.name}-predictions"
    engines = [b for b, _ in opened]
    if sw_batch is None:
        sw_batch = getattr(engines[0], "preferred_batch", 4 if engines[0].device.startswith("cuda") else 1)
    options = InferOptions(overlap, sw_batch, tta, convention, save_probabilities, min_component_voxels,
                           et_to_ncr_below, overwrite)
    console.print(f"{len(cases)} case(s), backend {engines[0].name} on {engines[0].device} ({engines[0].precision}), "
                  f"{len(engines)} model(s){', TTA' if tta else ''}")
    started = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task("cases", total=len(cases))
        tiles = progress.add_task("tiles", total=None)

        def show_tiles(case_id: str, done: int, total: int) -> None:
            progress.update(tiles, description=f"tiles of {case_id}", completed=done, total=total)

        results = infer_cases(cases, engines, contract, out, options, _references(labels) if labels else None,
                              on_case=lambda result: progress.advance(task), on_tiles=show_tiles)
    wall = time.perf_counter() - started
    summary = write_summary(results, out, {"backend": engines[0].name, "device": engines[0].device,
                                           "precision": engines[0].precision, "models": [str(m) for m in model],
                                           "overlap": overlap, "tta": tta}, wall)
    _render(results, out, summary, wall)
    if any(r.error for r in results):
        raise typer.Exit(1)


def _render(results, out: Path, summary: Path, wall: float) -> None:
    table = Table(title=f"{len(results)} case(s) -> {out}")
    for column in ("case", "status", "Dice WT", "Dice TC", "Dice ET", "HD95 WT", "seconds"):
        table.add_column(column, no_wrap=column != "status")
    for r in results:
        m = r.metrics or {}
        status = "skipped" if r.skipped else f"[red]{escape(r.error)}[/]" if r.error else "ok"
        table.add_row(r.case_id, status, *(f"{m[k]:.3f}" if k in m else "" for k in ("dice_WT", "dice_TC", "dice_ET")),
                      f"{m['hd95_WT']:.1f}" if "hd95_WT" in m else "",
                      f"{sum(r.seconds.values()):.1f}" if r.seconds else "")
    console.print(table)
    failed = [r for r in results if r.error]
    if failed:
        err_console.print(f"[red]{len(failed)} case(s) failed[/]; the others were written")
    console.print(f"{wall:.1f} s in all; metrics and latency: {out / 'metrics.csv'}, {summary}")
