"""``bratsx infer``: segment a directory of cases with one or more models."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.text import Text

from ..cases import Layout, discover
from ..errors import BratsxError
from ..extras import optional_import
from ..postprocess import postprocess_override
from ..prepare.skullstrip import SkullStripper, parse_skull_strip
from ..runtime.backends import BackendName
from ..runtime.segment import SegmentOptions, Window
from .common import console, literal, reports_errors
from .options import MODEL_LABELS, OutputLabelsOption, WorkspaceOption, default_of


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
        case_sensitive=False, help="Inference engine. auto: PyTorch for a checkpoint, else the first that runs "
                                   "here: a TensorRT engine, ONNX Runtime on CUDA, OpenVINO (f32), ONNX Runtime on "
                                   "the CPU. openvino-bf16 "
                                   "computes in bf16: 1.7-2.0x faster than openvino on CPUs with AVX512-BF16; "
                                   "openvino-int8 runs the model folder's int8 IR (bratsx export --int8) (README: "
                                   "Performance).")] = BackendName.AUTO,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder. [default: CASES_DIR-predictions]",
                                                file_okay=False, show_default=False)] = None,
    window: Annotated[Window, typer.Option(
        case_sensitive=False, help="tiles: overlapping tiles of the model's patch; box: one pass over the whole "
                                   "brain box (not for TensorRT engines; README: Performance).")
                      ] = default_of(SegmentOptions, "window"),
    overlap: Annotated[Optional[float], typer.Option(
        min=0.0, max=0.95, help="Sliding-window overlap. [default: the model's own: 0.5 for bratsx and nnU-Net models, "
                                "a MONAI bundle's inferer overlap]", show_default=False)
                       ] = default_of(SegmentOptions, "overlap"),
    sw_batch: Annotated[Optional[int], typer.Option(
        min=1, help="Tiles per backend call. [default: 1 on CPU, 4 on GPU, the engine's largest for TensorRT]",
        show_default=False)] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average all 8 mirrorings of every tile (8x the work).")
                   ] = default_of(SegmentOptions, "tta"),
    output_labels: OutputLabelsOption = None,
    save_probabilities: Annotated[bool, typer.Option("--save-probabilities",
                                                     help="Also write float16 probabilities.")] = False,
    postprocess: Annotated[str, typer.Option(
        "--postprocess", help="Post-processing: model (the model's own spec, tuned by bratsx postprocess tune), none, "
                              "or a SPEC.json file.")] = "model",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo cases whose output is up to date.")] = False,
    labels: Annotated[Optional[Path], typer.Option("--references", help="Reference labels, if not in the case "
                                                   "folders.", exists=True, file_okay=False, show_default=False)
                      ] = None,
    layout: Annotated[Optional[Layout], typer.Option(case_sensitive=False, help="Force the case layout.",
                                                     show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads of the whole run, split between "
                                                               "--workers or Ray actors. [default: all cores]",
                                                   show_default=False)] = None,
    device: Annotated[str, typer.Option(help="ort and torch backends: cpu or cuda (auto chooses itself).")] = "cpu",
    ort_tensorrt: Annotated[bool, typer.Option("--ort-tensorrt", help="ort on cuda: use ONNX Runtime's TensorRT "
                                               "execution provider.")] = False,
    workspace: WorkspaceOption = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes sharing the CPU cores (with --ray: inference "
                                                     "actors). Cases are handed out one at a time.")] = 1,
    devices: Annotated[Optional[str], typer.Option(help="One worker process per device, e.g. cuda:0,cuda:1 (not "
                                                        "with --ray).", show_default=False)] = None,
    num_parts: Annotated[int, typer.Option(min=1, help="Split the sorted cases into this many parts (round-robin) "
                                                       "and run only --part-id; merge with bratsx summarize.")] = 1,
    part_id: Annotated[int, typer.Option(min=0, help="Which part to run, 0 to --num-parts - 1.")] = 0,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", metavar="ADDRESS", help="Run on Ray Data (pip install 'bratsx[ray]'): 'local' starts a local "
                                         "instance, 'auto' joins the cluster on this machine, ray://HOST:10001 a "
                                         "remote one. Inputs, outputs and models on storage every node sees.",
        show_default=False)] = None,
    report: Annotated[bool, typer.Option("--report", help="Also draw every case and write OUT/report/report.html "
                                                          "(as bratsx report OUT --cases CASES_DIR).")] = False,
    prepare: Annotated[bool, typer.Option("--prepare", help="CASES_DIR holds raw scans (DICOM or NIfTI per "
                                          "sequence, unregistered, skull on): prepare them first as bratsx prepare "
                                          "does with its defaults (into OUT/prepared), segment them, and write each "
                                          "segmentation back on every native sequence grid (OUT/native, with a "
                                          "DICOM-SEG for DICOM inputs). pip install 'bratsx[prepare]'.")] = False,
    skull_strip: Annotated[str, typer.Option(
        "--skull-strip", metavar="deepbet|none|synthstrip:PATH",
        help="With --prepare: deepbet (its bundled networks on ONNX Runtime), synthstrip:PATH (SynthStrip with "
             "weights you have) or none (the scans are already skull-stripped).")] = SkullStripper.DEEPBET.value,
) -> None:
    """Segment every case in CASES_DIR and write OUT/<case_id>.nii.gz in each input's geometry.

    Each case also gets OUT/records/<case_id>.json (inputs, model, settings, timings, metrics), from
    which OUT/metrics.csv and OUT/summary.json are written. Where a case has a reference segmentation
    (or --references has one), Dice, sensitivity, specificity, HD95 and volumes per region are reported.
    A rerun reuses up-to-date outputs and redoes stale ones (input, model or settings changed). A bad
    case is reported and the others finish; the exit code is then 1.
    """
    from ..labels import LabelConvention
    from ..runtime import InferOptions, ModelSpec, RunnerSpec, Threads, run_batch
    from ..runtime.evaluate import segmentation_files
    from ..runtime.parts import Part
    from ..runtime.scheduling import choose_scheduler
    from ..runtime.segment import check_model_labels
    from .render import batch_progress, render_records

    model_labels = output_labels is not None and output_labels.value == MODEL_LABELS
    convention = LabelConvention(output_labels.value) if output_labels is not None and not model_labels else None
    if model_labels and prepare:
        raise BratsxError("--labels model with --prepare: the native-grid outputs and DICOM-SEG are written in a "
                          "BraTS label set; leave --labels out or name one")
    out = out or _output_folder(cases_dir)
    unprepared = 0
    if prepare:
        cases_dir, unprepared = _prepared_cases(cases_dir, out, skull_strip)
    part = Part(num_parts, part_id) if num_parts > 1 else None
    references = segmentation_files(labels).found if labels else None
    scheduler = choose_scheduler(workers=workers, devices=devices.split(",") if devices else None, threads=threads,
                                 ray=ray)
    segment = SegmentOptions(window=window, overlap=overlap, sw_batch=sw_batch, tta=tta, convention=convention,
                             model_labels=model_labels)
    models = ModelSpec(paths=tuple(model or [_default_model(workspace)]), backend=backend.value,
                       ort_tensorrt=ort_tensorrt)
    options = InferOptions(save_probabilities=save_probabilities, overwrite=overwrite)
    with RunnerSpec(models, segment).open(device, threads) as runner:  # here first: a bad model stops the run
        check_model_labels(runner.contract, segment)
        found = discover(cases_dir, layout, runner.contract.modality_order)  # the files of the model's channels
        for skipped in found.skipped:
            console.print(literal(f"skipped {skipped.path}: {skipped.reason}", "yellow"))
        cases = found.cases
        if convention is not None:  # --labels: the set of every reference and output, stated, never read from values
            cases = [dataclasses.replace(case, stated_labels=convention) for case in cases]
        # the post-processing every record names: --postprocess, else the model's own (tuned) spec
        runner = runner.with_options(dataclasses.replace(segment, postprocess=postprocess_override(
            postprocess, runner.contract.postprocess)))
        identity = runner.identity
        count = len(part.select(cases)) if part else len(cases)
        console.print(f"{count} case(s){f' (part {part_id} of {num_parts})' if part else ''}; model "
                      f"{escape(', '.join(identity['files']))}; backend {identity['backend']} on {identity['device']} "
                      f"({identity['precision']}){', TTA' if tta else ''}; {escape(scheduler.description)}")
        if not isinstance(scheduler, Threads):
            runner.close()  # every worker opens its own
        with batch_progress(count) as (on_case, on_tiles):
            result = run_batch(cases, runner, out, options, scheduler=scheduler, part=part,
                               references=references, on_case=on_case, on_tiles=on_tiles)
    render_records(result.records, out, result.summary, result.wall_seconds)
    if prepare:
        unprepared += _back_to_native(result.records, out, {case.case_id: convention or case.output_convention(
            runner.contract.label_set) for case in cases})
    if result.summary_error:  # a full disk: every case's outcome was shown before the one line about it
        raise BratsxError(result.summary_error)
    if part:
        console.print(f"part {part_id} of {num_parts}: when every part is done, bratsx summarize "
                      f"{escape(str(out))} --cases {escape(str(cases_dir))} writes the whole run's metrics and lists "
                      "any case missing")
    if report:
        build_batch_report = optional_import("bratsx.report.build", "report", purpose="--report",
                                             attribute="build_batch_report")
        drawn = build_batch_report(out, cases_dir)
        console.print(Text.assemble("QC report: ", literal(drawn.html)))
    if result.failed or unprepared:
        raise typer.Exit(1)


def _prepared_cases(raw: Path, out: Path, skull_strip: str) -> tuple[Path, int]:
    """``--prepare``: every case of ``raw`` prepared into ``OUT/prepared`` (one line for each that cannot be);
    returns that folder, whose cases are then segmented as any others, and how many cases could not be prepared.

    Raises:
        BratsxError: no case could be prepared.
    """
    from ..prepare import PrepareOptions, prepare_input
    from ..prepare.batch import PREPARED_FOLDER

    prepared = out / PREPARED_FOLDER
    def show(result) -> None:
        console.print(literal(result.error, "red") if result.error else
                      f"prepared {escape(result.case_id)} in {result.record['seconds_total']:.1f} s")

    results = prepare_input(raw, prepared, PrepareOptions(skull_strip=parse_skull_strip(skull_strip)), on_case=show)
    if not any(r.folder for r in results):
        raise BratsxError(f"{raw}: no case could be prepared (each one's reason is above)")
    failed = sum(1 for r in results if r.error)
    if failed:
        console.print(f"{failed} case(s) could not be prepared; the others go on", style="yellow")
    return prepared, failed


def _back_to_native(records, out: Path, conventions) -> int:
    """``--prepare``: each segmented case back on its native grids, one line per case; returns how many failed."""
    from ..prepare.batch import NATIVE_FOLDER, native_segmentations

    failed = 0
    for case_id, native in native_segmentations(records, out, conventions).items():
        if isinstance(native, str):
            console.print(literal(native, "red"))
            failed += 1
        else:
            dicom = f" and {native.dicom_seg.name}" if native.dicom_seg else ""
            console.print(f"{escape(case_id)}: native segmentations in {escape(str(out / NATIVE_FOLDER))} "
                          f"({len(native.segmentations)} grid(s)){escape(dicom)}")
    return failed
