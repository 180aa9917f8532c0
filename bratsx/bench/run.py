"""``bratsx bench``: throughput and latency per backend and window, against the machine's peak and against peers.

One report, from one run on one set of cases and one set of weights:

- per backend and window (``tiles``, or ``box``: one pass over the brain box): build/compile time, tile
  throughput (tiles/s, voxels/s), effective GFLOP/s from the model's FLOPs per tile and their fraction of
  the library peak of the same precision measured in the same run, per-case latency p50/p95 with the stage
  breakdown, directory throughput (cases/min), peak memory, and the per-region Dice agreement with the
  fp32 tiled row (the reference every faster path is judged against);
- with peers (``compare``): MONAI's ``sliding_window_inference`` with PyTorch eager, and nnU-Net v2's own
  predictor (mirroring as ``tta``), on the same weights and cases; the speed ratio of every row to each
  peer, and the per-region Dice agreement between their outputs; a ratio counts only where agreement is
  at least :data:`AGREEMENT_FLOOR`;
- where the fastest counted row's case time goes (:func:`stage_table`): load, preprocess, the network, the
  blend, resampling, paste back, regions and post-processing, metrics, write, with the stages outside the
  network above 10% of the case listed;
- the load average at the start and the end, since a shared machine's timings mean little without it.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from .. import __version__
from ..cases import Case, discover_cases
from ..errors import BratsxError
from ..labels import LabelConvention
from ..metrics import dice
from ..runtime.backends import BackendName, TorchOptions
from ..runtime.evaluate import evaluate_directories, segmentation_files
from ..runtime.records import case_seconds
from ..runtime.segment import STAGE_PARTS, STAGES, Window
from .flops import tile_flops
from .machine import machine_info
from .peak import machine_peaks
from .peer_labels import peer_convention

if TYPE_CHECKING:
    from ..modelfolder import ModelFolder

__all__ = ["AGREEMENT_FLOOR", "BenchConfig", "peak_gflops", "peak_precision", "ratio_text", "run_bench",
           "stage_table"]

#: The regions agreement is reported on, as metric names spell them.
_REGIONS = ("WT", "TC", "ET")
#: Dice agreement with a peer below which a speed ratio is not counted (the outputs differ).
AGREEMENT_FLOOR = 0.99

#: The torch backend under autocast (fp16 on CUDA, bf16 on CPU), measured beside plain torch.
TORCH_AMP = "torch-amp"
#: Backends the bench can measure (every named backend but ``auto``, and torch under autocast).
BENCH_BACKENDS = (*(b.value for b in BackendName if b is not BackendName.AUTO), TORCH_AMP)
#: Peers the bench can compare with.
PEERS = ("monai", "nnunet")
#: Rows whose tiled output is the fp32 reference, in order of preference.
FP32_REFERENCES = (BackendName.OPENVINO.value, BackendName.ORT.value, BackendName.TORCH.value)
#: Torch options the bench can switch on (fields of :class:`~bratsx.runtime.backends.TorchOptions` but amp).
TORCH_FLAGS = tuple(name for name in TorchOptions.__dataclass_fields__ if name != "amp")


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What to measure.

    Attributes:
        backends: bratsx backends to measure (:data:`BENCH_BACKENDS`).
        model: a checkpoint, run directory or model folder (its recorded checkpoint; its int8 IR for
            ``openvino-int8``); ``None`` for the default network with random weights.
        cases_dir: cases to run; ``None`` for ``synthetic`` synthetic 240x240x155 cases.
        synthetic: how many synthetic cases.
        windows: how each backend covers a case (``tiles``, ``box``); one row per backend and window.
        compare: peers to run on the same weights (:data:`PEERS`).
        tta: mirror test-time augmentation in bratsx and nnU-Net's mirroring (MONAI is always run without).
        repeat: passes over the cases per backend.
        overlap: sliding-window overlap; ``None``: the model's own (``1 - tile_step``: 0.5, or a MONAI bundle's).
        device: ``cpu`` or ``cuda``, for ort, torch and MONAI.
        engine: a TensorRT engine, for the ``trt`` backend.
        torch_flags: :data:`TORCH_FLAGS` switched on for the torch rows (channels_last, compile, cuda_graphs).
    """

    backends: tuple[str, ...] = ("ort", "openvino", "torch")
    model: Path | None = None
    cases_dir: Path | None = None
    synthetic: int = 2
    windows: tuple[str, ...] = (Window.TILES.value,)
    compare: tuple[str, ...] = ()
    tta: bool = False
    repeat: int = 2
    overlap: float | None = None
    device: str = "cpu"
    engine: Path | None = None
    torch_flags: tuple[str, ...] = ()


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _bundle_source(folder: ModelFolder, config: BenchConfig) -> Path | None:
    """The MONAI bundle a model folder was imported from (``None``: not imported from one), checked against what
    the bench can run on it: ONNX backends, and MONAI's bundle inference as the peer.

    Raises:
        BratsxError: torch rows or the nnU-Net peer asked for, or the bundle gone while MONAI is the peer.
    """
    source = folder.info.get("source", {})
    if source.get("framework") != "monai":
        return None
    wrong = [b for b in config.backends if b in (BackendName.TORCH.value, TORCH_AMP)]
    wrong += [peer for peer in config.compare if peer != "monai"]
    if wrong:
        raise BratsxError(f"bench --model {folder.path}: imported from a MONAI bundle, which the bench runs on its "
                          f"ONNX files and compares with MONAI's bundle inference only; leave out {', '.join(wrong)} "
                          "(e.g. --backends ort,openvino --compare monai)")
    bundle = Path(source["bundle"])
    if "monai" in config.compare and not (bundle / "configs").is_dir():
        raise BratsxError(f"bench --model {folder.path}: the bundle it was imported from ({bundle}) is gone; MONAI's "
                          "bundle inference needs it")
    return bundle


def _model_files(config: BenchConfig, work: Path) -> tuple[Path | None, Path, Path | None, Path | None]:
    """The checkpoint (for torch and the peers), the ONNX export of the same weights, the model folder's
    gated int8 IR (when ``openvino-int8`` is measured), and the MONAI bundle of a folder imported from one (then
    there is no checkpoint, and the ONNX file is the folder's own).

    A folder imported from nnU-Net is its own "checkpoint": the torch backend rebuilds its networks from the results
    folder it records, and the ONNX rows run the folder's verified ``model.onnx``.
    """
    from ..export.pipeline import export_model
    from ..modelfolder import find_model_folder

    checkpoint = config.model
    folder = find_model_folder(checkpoint) if checkpoint is not None else None
    int8 = None
    if BackendName.OPENVINO_INT8.value in config.backends:
        int8 = folder.file("int8") if folder is not None else None
        if int8 is None:
            raise BratsxError("bench --backends openvino-int8 needs --model to be a model folder exported with "
                              "bratsx export --int8 (its gated int8 IR is measured)")
    bundle = _bundle_source(folder, config) if folder is not None else None
    if bundle is not None:
        return None, folder.file("fp32"), int8, bundle
    if folder is not None and folder.imported_from:
        if "monai" in config.compare:
            raise BratsxError(f"bench --model {config.model}: an imported {folder.imported_from} model is compared "
                              "with its own framework's predictor (--compare nnunet), not with MONAI")
        return folder.path, folder.file("fp32"), int8, None
    if folder is not None:
        checkpoint = folder.checkpoint
        if checkpoint is None:
            raise BratsxError(f"bench --model {config.model}: the checkpoint this model was exported from is not "
                              "recorded or gone; give the run directory (every backend runs the same weights)")
    if checkpoint is None:
        import torch

        from ..contract import ModelContract
        from ..network.checkpoint import save_checkpoint
        from ..network.unet import NetworkConfig, UNet3D

        torch.manual_seed(0)
        network = NetworkConfig()
        contract = ModelContract((128, 128, 128), "regions", network.to_dict())
        checkpoint = save_checkpoint({"contract": contract.to_dict(), "model": UNet3D(network).state_dict()},
                                     work / "random-weights.pt")
    return checkpoint, export_model(checkpoint, work / "model").onnx, int8, None


def _imported_source(model: Path | None) -> dict[str, Any] | None:
    """For a model imported from nnU-Net: the results folder, folds and checkpoint it came from and its channels'
    modalities (nnU-Net's predictor runs that folder, and every row writes the model's own labels); else ``None``."""
    from ..modelfolder import find_model_folder

    folder = find_model_folder(model) if model is not None else None
    if folder is None or folder.imported_from != "nnunetv2":
        return None
    source = folder.info["source"]
    return {"results": source["results"], "folds": source["folds"], "checkpoint_name": source["checkpoint_name"],
            "modalities": list(folder.contract.modality_order)}


def ratio_text(entry: dict[str, Any], peer: str, emphasis: str = "") -> str:
    """A report row's speed ratio to ``peer`` as shown: ``2.60x`` when it counts (agreement >=
    :data:`AGREEMENT_FLOOR`), wrapped in ``emphasis`` (``**`` in Markdown); ``2.90x, not counted`` when
    the outputs differ; empty where that peer was not run."""
    if f"latency_ratio_vs_{peer}" not in entry:
        return ""
    ratio = entry[f"latency_ratio_vs_{peer}"]
    if entry.get(f"speedup_vs_{peer}") is None:
        return f"{ratio:.2f}x, not counted"
    return f"{emphasis}{ratio:.2f}x{emphasis}"


def row_name(backend: str, window: str) -> str:
    """A report row: the backend, with ``+box`` when it covers the brain box in one pass."""
    return backend if Window(window) is Window.TILES else f"{backend}+{window}"


def peak_precision(precision: str) -> str:
    """The peak a row of ``precision`` is judged against: bf16 and int8 by their own, every other (f32, and
    fp16 models, whose convolutions ONNX Runtime's CPU provider runs in fp32) by fp32's."""
    return precision if precision in ("bf16", "int8") else "fp32"


def peak_gflops(report: dict[str, Any]) -> dict[str, float | None]:
    """A report's measured peak per precision (GFLOP/s), from this round's ``peaks`` or round 2's
    ``cpu_gemm_peak_gflops`` (numpy/PyTorch GEMM) in older results files."""
    if "peaks" in report:
        return report["peaks"]["measured_gflops"]
    return report.get("cpu_gemm_peak_gflops", {})


def _summarise(raw: dict[str, Any], flops: float, peaks: dict[str, float | None], patch_voxels: int,
               cases: int) -> dict:
    totals = [case_seconds(seconds) for seconds in raw["case_seconds"]]
    wall = float(np.median(raw["directory_wall_s"]))
    summary = {
        "device": raw["device"], "precision": raw["precision"], "build_s": raw["build_s"],
        "sw_batch": raw["sw_batch"], "convolution_precisions": raw.get("convolution_precisions"),
        "case_p50_s": _percentile(totals, 50), "case_p95_s": _percentile(totals, 95),
        "stages_mean_s": {s: float(np.mean([c.get(s, 0.0) for c in raw["case_seconds"]])) for s in STAGES},
        "stage_parts_mean_s": {part: float(np.mean([c[part] for c in raw["case_seconds"]])) for part in _PARTS
                               if all(part in c for c in raw["case_seconds"])},
        "cases_per_min": 60.0 * cases / wall if wall else None,
        "peak_rss_mb": raw.get("peak_rss_mb"), "peak_gpu_mb": raw.get("peak_gpu_mb"),
    }
    if raw["tiles_per_s"]:
        gflops = raw["tiles_per_s"] * flops / 1e9
        precision = peak_precision(raw["precision"])
        peak = peaks.get(precision) if raw["device"] == "cpu" else None
        summary.update({"tiles_per_s": raw["tiles_per_s"], "voxels_per_s": raw["tiles_per_s"] * patch_voxels,
                        "effective_gflops": gflops, "peak_precision": precision,
                        "fraction_of_peak": gflops / peak if peak else None})
    return summary


#: A case's time in the order it is spent: the stages, each split into its timed parts where it has them.
_PARTS = tuple(f"{stage}.{part}" for stage, parts in STAGE_PARTS.items() for part in parts)
#: Share of a case above which a stage outside the network needs a fix or a written reason.
STAGE_SHARE_FLAG = 0.10


def stage_table(report: dict[str, Any]) -> dict[str, Any] | None:
    """Where the fastest counted row's case time goes: every stage, split into its parts, with its share of the
    case and the stages outside the network above :data:`STAGE_SHARE_FLAG` listed.

    A row counts when it agrees with every peer (its speed ratio is counted), or without peers with the fp32
    tiled row, at least :data:`AGREEMENT_FLOOR` per region; the fp32 tiled row itself counts. ``None`` when no
    bratsx row counts or none has stage parts.
    """
    def counted(row: str, entry: dict[str, Any]) -> bool:
        if row in PEERS or "stage_parts_mean_s" not in entry:
            return False
        if report.get("peers"):
            return all(entry.get(f"speedup_vs_{peer}") is not None for peer in report["peers"])
        agreement = entry.get("agreement_with_fp32_tiles")
        return row == report.get("fp32_reference") or (agreement is not None and
                                                       min(agreement.values()) >= AGREEMENT_FLOOR)

    rows = [(entry["case_p50_s"], row) for row, entry in report["backends"].items() if counted(row, entry)]
    if not rows:
        return None
    row = min(rows)[1]
    entry = report["backends"][row]
    stages, parts = entry["stages_mean_s"], entry["stage_parts_mean_s"]
    seconds: dict[str, float] = {}
    for stage in STAGES:
        split = [f"{stage}.{part}" for part in STAGE_PARTS.get(stage, ()) if f"{stage}.{part}" in parts]
        seconds.update({part: parts[part] for part in split} if split else {stage: stages[stage]})
    total = sum(stages.values())
    share = {name: value / total if total else 0.0 for name, value in seconds.items()}
    flagged = [name for name, value in share.items() if name != "inference.network" and value > STAGE_SHARE_FLAG]
    return {"row": row, "case_mean_s": total, "seconds": seconds, "share": share, "above_10_percent": flagged}


def _mean_dice(predictions: Path, references: Path, model_regions: Sequence[Sequence[int]] | None = None,
               labels: LabelConvention | None = None) -> dict[str, float]:
    """Mean per-region Dice of the segmentations in ``predictions`` against those in ``references``.

    ``model_regions``: both folders hold an imported model's own labels (its ``dataset.json`` values, as
    nnU-Net writes them and ``--labels model``), read as WT/TC/ET through the values of each region. ``labels``:
    both hold this BraTS label set (else each file's set is read from its values and case id).
    """
    if model_regions is None:
        results = [r.metrics for r in evaluate_directories(predictions, references, labels) if r.metrics]
    else:
        predicted, referenced = segmentation_files(predictions).found, segmentation_files(references).found
        results = []
        for case_id in sorted(set(predicted) & set(referenced)):
            ours, theirs = (np.asarray(nib.load(files[case_id]).dataobj) for files in (predicted, referenced))
            results.append({f"dice_{region}": dice(np.isin(ours, values), np.isin(theirs, values))
                            for region, values in zip(_REGIONS, model_regions)})
    return {region: float(np.mean([r[f"dice_{region}"] for r in results])) for region in _REGIONS}


def _reference_folder(cases: Sequence[Case], folder: Path) -> Path:
    """``folder/<id>.nii[.gz]`` links to each case's reference, whatever its layout (MSD keeps them apart)."""
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        suffix = ".nii.gz" if case.label.name.endswith(".gz") else ".nii"
        (folder / f"{case.case_id}{suffix}").symlink_to(case.label.resolve())
    return folder


def _check_config(config: BenchConfig) -> None:
    unknown = [b for b in config.backends if b not in BENCH_BACKENDS]
    if unknown or not config.backends:
        raise BratsxError(f"--backends {','.join(config.backends)!r}: choose among {', '.join(BENCH_BACKENDS)}")
    windows = [w.value for w in Window]
    if not config.windows or any(w not in windows for w in config.windows):
        raise BratsxError(f"--window {','.join(config.windows)!r}: choose among {', '.join(windows)}")
    if any(peer not in PEERS for peer in config.compare):
        raise BratsxError(f"--compare {','.join(config.compare)!r}: the peers are {', '.join(PEERS)}")
    if any(flag not in TORCH_FLAGS for flag in config.torch_flags):
        raise BratsxError(f"--torch-options {','.join(config.torch_flags)!r}: choose among {', '.join(TORCH_FLAGS)}")


def run_bench(config: BenchConfig, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every backend and window of ``config`` and every peer (each in its own process) and return the report.

    Raises:
        BratsxError: a backend that cannot run here, or bad cases.
    """
    step = on_step or (lambda text: None)
    _check_config(config)
    # the workers run in a scratch folder: a relative path from the command line means the caller's folder
    config = replace(config, **{name: Path(value).absolute() for name in ("model", "cases_dir", "engine")
                                if (value := getattr(config, name)) is not None})
    with tempfile.TemporaryDirectory(prefix="bratsx-bench-") as scratch:
        return _run_bench(config, Path(scratch), step)


def _measure(task: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one measurement in its own worker process."""
    # Run from the scratch folder, so the worker imports the installed bratsx, never a folder named
    # bratsx in the user's current directory.
    process = subprocess.run([sys.executable, "-m", "bratsx.bench.worker", json.dumps(task)],
                             capture_output=True, text=True, check=False, cwd=work)
    if process.returncode != 0:
        last = process.stderr.strip().splitlines()[-1] if process.stderr.strip() else "no output"
        raise BratsxError(f"bench: {task['row']} failed: {last}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def _run_bench(config: BenchConfig, work: Path, step: Callable[[str], None]) -> dict[str, Any]:
    from ..contract import read_onnx_contract
    from ..synth import write_synthetic_dataset

    load_at_start = os.getloadavg()
    step("preparing the model")
    checkpoint, onnx_path, int8, bundle = _model_files(config, work)
    contract = read_onnx_contract(onnx_path)
    overlap = config.overlap if config.overlap is not None else 1.0 - contract.tile_step
    imported = _imported_source(config.model)
    model_regions = contract.model_labels["regions"] if imported is not None else None
    cases_dir = config.cases_dir
    if cases_dir is None:
        step(f"synthesising {config.synthetic} case(s)")
        cases_dir = work / "cases"
        write_synthetic_dataset(cases_dir, config.synthetic, seed=7)
    cases = discover_cases(cases_dir, channels=contract.modality_order)
    step("measuring the peaks (fp32, bf16, int8: MatMul and 3D convolution through OpenVINO/oneDNN)")
    peaks = machine_peaks()
    flops = tile_flops(onnx_path)
    patch_voxels = int(np.prod(contract.patch_size))

    report: dict[str, Any] = {
        "bratsx": __version__, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(), "cases": [c.case_id for c in cases], "overlap": overlap,
        "tta": config.tta, "windows": list(config.windows), "peers": list(config.compare),
        "torch_flags": list(config.torch_flags),
        # peers do not post-process: with peers, bratsx's rows do not either, so that agreement compares like with like
        "postprocess": "none" if config.compare else "model",
        # and write the peers' label set, in which the agreement is read (an imported model's rows: its own labels)
        "labels": peer_convention(contract).value if config.compare and imported is None else None,
        "model": str(config.model or "default network, random weights (seed 0)"),
        "patch": list(contract.patch_size), "tile_gflop": flops / 1e9, "peaks": peaks,
        "backends": {},
    }
    rows = [(row_name(b, w), b, w) for b in config.backends for w in config.windows]
    rows += [(peer, peer, Window.TILES.value) for peer in config.compare]
    for row, backend, window in rows:
        step(f"measuring {row}")
        task = {"row": row, "backend": backend, "window": window, "onnx": str(onnx_path),
                "checkpoint": str(checkpoint), "int8": str(int8) if int8 else None, "cases": str(cases_dir),
                "channels": list(contract.modality_order), "out": str(work / "out" / row), "repeat": config.repeat,
                "overlap": overlap,
                "bundle": str(bundle) if bundle is not None else None,
                "tta": config.tta, "device": config.device, "engine": str(config.engine) if config.engine else None,
                "torch_flags": list(config.torch_flags), "postprocess": report["postprocess"],
                "model_labels": imported is not None, "nnunet_results": imported, "convention": report["labels"]}
        measured = _measure(task, work)
        report["backends"][row] = {"window": window, **_summarise(measured, flops, peaks["measured_gflops"],
                                                                   patch_voxels, len(cases))}

    labelled = [case for case in cases if case.label is not None]
    if labelled and imported is None:  # an imported model's rows hold its own labels, not the references' set
        references = _reference_folder(labelled, work / "references")
        for row, _, _ in rows:
            report["backends"][row]["dice_vs_reference"] = _mean_dice(work / "out" / row, references)
    _compare(report, [row for row, _, _ in rows], config.compare, work / "out", model_regions,
             LabelConvention(report["labels"]) if report["labels"] else None)
    report["stage_table"] = stage_table(report)
    report["load_average"] = {"start": list(load_at_start), "end": list(os.getloadavg())}
    return report


def _compare(report: dict[str, Any], rows: list[str], peers: Sequence[str], outputs: Path,
             model_regions: Sequence[Sequence[int]] | None = None, labels: LabelConvention | None = None) -> None:
    """Agreement with the fp32 tiled row, and with each peer and the speed ratio to it (counted or not);
    ``model_regions``: the outputs hold an imported model's own labels (see :func:`_mean_dice`); ``labels``: the
    label set every output was written in (with peers, :func:`~bratsx.bench.peer_labels.peer_convention`)."""
    entries = report["backends"]
    reference = next((row for row in FP32_REFERENCES if row in entries), None)
    report["fp32_reference"] = reference
    for row in rows:
        if reference is not None and row != reference:
            entries[row]["agreement_with_fp32_tiles"] = _mean_dice(outputs / row, outputs / reference, model_regions,
                                                                   labels)
    for peer in peers:
        for row in rows:
            if row in PEERS:
                continue
            agreement = _mean_dice(outputs / row, outputs / peer, model_regions, labels)
            entry = entries[row]
            ratio = entries[peer]["case_p50_s"] / entry["case_p50_s"]
            entry[f"agreement_with_{peer}"] = agreement
            entry[f"latency_ratio_vs_{peer}"] = ratio  # measured, whatever the agreement
            entry[f"speedup_vs_{peer}"] = ratio if min(agreement.values()) >= AGREEMENT_FLOOR else None
