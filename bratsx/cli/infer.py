"""``bratsx infer``: segment a directory of cases with one or more models."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..cases import Layout, discover_cases
from ..errors import BratsxError
from ..labels import LabelConvention
from ..runtime.backends import BackendName
from ..runtime.segment import SegmentOptions
from .common import console, progress_bar, reports_errors
from .options import WorkspaceOption, default_of


def _default_model(workspace: Optional[Path]) -> Path:
    """The workspace's default model folder (else the bundled one), announced."""
    from ..workspace import Workspace

    chosen = Workspace.locate(workspace).default_model()
    origin = "the workspace's default model" if chosen.origin == "workspace" else "the bundled model"
    console.print(f"no --model given: using {origin} {escape(chosen.folder.name)} ({escape(str(chosen.folder.path))})")
    return chosen.folder.path


def _output_folder(cases_dir: Path) -> Path:
    """``CASES_DIR-predictions`` beside the cases, named from the resolved folder (so ``.`` works)."""
    resolved = cases_dir.resolve()
    return resolved.parent / f"{resolved.name}-predictions"




@reports_errors
def infer(
    cases_dir: Annotated[Path, typer.Argument(help="Directory of cases (any layout), or one case folder.",
                                              exists=True, file_okay=False)],
    model: Annotated[Optional[list[Path]], typer.Option(
        "--model", "-m", help="A model folder (or any file in one), an .onnx file, an .engine file, or a checkpoint/"
                              "run dir (torch). Repeat to average an ensemble. [default: the workspace's default "
                              "model, else the bundled one]", exists=True, show_default=False)] = None,
    backend: Annotated[BackendName, typer.Option(
        case_sensitive=False, help="Inference engine; auto picks the fastest installed. openvino-bf16 is ~1.9x "
                                   "faster than openvino on CPUs with AVX512-BF16 and agrees with it to Dice 0.999 "
                                   "on the README's cases.")] = BackendName.AUTO,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder. [default: CASES_DIR-predictions]",
                                                file_okay=False, show_default=False)] = None,
    overlap: Annotated[float, typer.Option(min=0.0, max=0.95, help="Sliding-window overlap.")
                       ] = default_of(SegmentOptions, "overlap"),
    sw_batch: Annotated[Optional[int], typer.Option(
        min=1, help="Tiles per backend call. [default: 1 on CPU, 4 on GPU, the engine's largest for TensorRT]",
        show_default=False)] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average all 8 mirrorings of every tile (8x the work).")
                   ] = default_of(SegmentOptions, "tta"),
    convention: Annotated[Optional[LabelConvention], typer.Option(
        case_sensitive=False, help="Label values of the outputs. [default: each input's own]",
        show_default=False)] = None,
    save_probabilities: Annotated[bool, typer.Option("--save-probabilities",
                                                     help="Also write float16 probabilities.")] = False,
    min_component_voxels: Annotated[int, typer.Option(min=0, help="Remove tumour components smaller than this.")
                                    ] = default_of(SegmentOptions, "min_component_voxels"),
    et_to_ncr_below: Annotated[int, typer.Option(min=0, help="Relabel ET as necrotic core when fewer ET voxels "
                                                             "than this are predicted.")
                               ] = default_of(SegmentOptions, "et_to_ncr_below"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo cases whose output is up to date.")] = False,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Reference labels, if not in the case folders.",
                                                   exists=True, file_okay=False, show_default=False)] = None,
    layout: Annotated[Optional[Layout], typer.Option(case_sensitive=False, help="Force the case layout.",
                                                     show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads. [default: all cores]",
                                                   show_default=False)] = None,
    device: Annotated[str, typer.Option(help="ort and torch backends: cpu or cuda (auto chooses itself).")] = "cpu",
    ort_tensorrt: Annotated[bool, typer.Option("--ort-tensorrt", help="ort on cuda: use ONNX Runtime's TensorRT "
                                               "execution provider.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Segment every case in CASES_DIR and write OUT/<case_id>.nii.gz in each input's geometry.

    Each case also gets OUT/records/<case_id>.json (inputs, model, settings, timings, metrics), from
    which OUT/metrics.csv and OUT/summary.json are written. Where a case has a reference segmentation
    (or --labels has one), Dice, sensitivity, specificity, HD95 and volumes per region are reported.
    A rerun reuses up-to-date outputs and redoes stale ones (input, model or settings changed). A bad
    case is reported and the others finish; the exit code is then 1.
    """
    from ..contract import file_sha256
    from ..runtime import open_model
    from ..runtime.evaluate import segmentation_files
    from ..runtime.infer import InferOptions, infer_cases
    from ..runtime.summary import write_summary
    from .render import render_records

    cases = discover_cases(cases_dir, layout)
    references = segmentation_files(labels).found if labels else None
    out = out or _output_folder(cases_dir)
    models = model or [_default_model(workspace)]
    with ExitStack() as stack:
        opened = [stack.enter_context(open_model(path, backend, device=device, threads=threads,
                                                 ort_tensorrt=ort_tensorrt)) for path in models]
        contract = opened[0].contract
        if any(o.contract.patch_size != contract.patch_size or o.contract.output_mode != contract.output_mode
               for o in opened):
            raise BratsxError("the models of an ensemble must share their patch size and output mode")
        engines = [o.backend for o in opened]
        segment = SegmentOptions(overlap=overlap, sw_batch=sw_batch, tta=tta, convention=convention,
                                 min_component_voxels=min_component_voxels, et_to_ncr_below=et_to_ncr_below)
        options = InferOptions(segment=segment, save_probabilities=save_probabilities, overwrite=overwrite)
        first = engines[0]
        identity = {"files": [str(o.file) for o in opened],
                    "sha256": ",".join(file_sha256(o.file) if o.file.is_file() else o.contract.checkpoint_sha256 or ""
                                       for o in opened),
                    "backend": first.name, "device": first.device, "precision": first.precision}
        console.print(f"{len(cases)} case(s); model {escape(', '.join(str(o.file) for o in opened))}; backend "
                      f"{first.name} on {first.device} ({first.precision}){', TTA' if tta else ''}")
        started = time.perf_counter()
        with progress_bar() as progress:
            task = progress.add_task("cases", total=len(cases))
            tiles = progress.add_task("tiles", total=None)

            def show_tiles(case_id: str, done: int, total: int) -> None:
                progress.update(tiles, description=f"tiles of {escape(case_id)}", completed=done, total=total)

            records = infer_cases(cases, engines, contract, out, options, model_identity=identity,
                                  references=references, on_case=lambda _: progress.advance(task),
                                  on_tiles=show_tiles)
    wall = time.perf_counter() - started
    summary = write_summary(records, out, {"model": identity, "overlap": overlap, "tta": tta}, wall)
    render_records(records, out, summary, wall)
    if any(r.status == "failed" for r in records):
        raise typer.Exit(1)
