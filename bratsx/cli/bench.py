"""``bratsx bench``: speed per backend and window, side by side with MONAI and nnU-Net v2, against the machine's
measured peak."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..atomic import write_bytes_atomic
from ..bench.run import BENCH_BACKENDS, PEERS, TORCH_FLAGS, BenchConfig, peak_gflops, ratio_text
from ..errors import BratsxError
from .common import console, err_console, reports_errors
from .options import WorkspaceOption, default_of
from .render import per_region


def _workspace_model(workspace: Optional[Path]) -> Optional[Path]:
    """The workspace's own default model when its checkpoint is at hand, or it was imported (the bench runs every
    backend, torch and the peers included, on the same weights), announced; ``None`` otherwise."""
    from ..workspace import Workspace

    try:
        chosen = Workspace.locate(workspace).default_model()
    except BratsxError:
        return None
    if chosen.origin != "workspace" or (chosen.folder.checkpoint is None and not chosen.folder.imported_from):
        return None
    console.print(f"no --model given: benchmarking the workspace's default model {escape(chosen.folder.name)}")
    return chosen.folder.path


@reports_errors
def bench(
    model: Annotated[Optional[Path], typer.Option(
        "--model", "-m", help="A checkpoint, run directory or model folder (exported on the fly so every backend "
                              "runs the same weights). [default: the workspace's default model, else the default "
                              "network with random weights]", exists=True, show_default=False)] = None,
    cases: Annotated[Optional[Path], typer.Option(
        "--cases", help="Cases to run. [default: --synthetic cases]", exists=True, file_okay=False,
        show_default=False)] = None,
    synthetic: Annotated[int, typer.Option(min=1, help="Synthetic 240x240x155 cases when --cases is not given.")
                         ] = default_of(BenchConfig, "synthetic"),
    backends: Annotated[str, typer.Option(help=f"Comma-separated: {', '.join(BENCH_BACKENDS)}.")
                        ] = ",".join(default_of(BenchConfig, "backends")),
    window: Annotated[str, typer.Option(
        help="Comma-separated: tiles (overlapping tiles), box (one pass over the brain box); a row per backend "
             "and window.")] = ",".join(default_of(BenchConfig, "windows")),
    compare: Annotated[Optional[str], typer.Option(
        help=f"Comma-separated peers ({', '.join(PEERS)}) run on the same weights: MONAI's "
             "sliding_window_inference (PyTorch eager), nnU-Net v2's own predictor (mirroring with --tta).",
        show_default=False)] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Mirror TTA in bratsx, and nnU-Net's mirroring.")
               ] = default_of(BenchConfig, "tta"),
    torch_options: Annotated[Optional[str], typer.Option(
        help=f"Comma-separated, for the torch rows: {', '.join(TORCH_FLAGS)}.", show_default=False)] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Passes over the cases per backend.")
                      ] = default_of(BenchConfig, "repeat"),
    overlap: Annotated[Optional[float], typer.Option(
        min=0.0, max=0.95, help="Sliding-window overlap (bratsx and the peer; a MONAI bundle always runs its own). "
                                "[default: the model's own: 0.5, or an imported bundle's]", show_default=False)
                       ] = default_of(BenchConfig, "overlap"),
    device: Annotated[str, typer.Option(help="cpu or cuda (ort, torch, MONAI).")] = default_of(BenchConfig, "device"),
    engine: Annotated[Optional[Path], typer.Option(help="TensorRT engine for the trt backend.", exists=True,
                                                   dir_okay=False, show_default=False)] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full report here.", dir_okay=False,
                                                     show_default=False)] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Measure tiles/s, effective GFLOP/s (and their share of this machine's peak of the same precision,
    measured in the same run with OpenVINO's oneDNN; the theoretical peak is recorded beside it),
    per-case latency p50/p95 with stages, cases/min and peak memory for each backend and window, each
    in its own process, and each row's Dice agreement with the fp32 tiled row.

    With --compare the same weights run through the peers on the same cases; a speed ratio counts
    only where the per-region Dice agreement with the peer's output is at least 0.99 (below that it is
    shown as "not counted"). Cases with reference labels also get each row's Dice against them.
    """
    from ..bench.run import run_bench

    if model is None:
        model = _workspace_model(workspace)
    config = BenchConfig(backends=_listed(backends), model=model, cases_dir=cases, synthetic=synthetic,
                         windows=_listed(window), compare=_listed(compare), tta=tta, repeat=repeat, overlap=overlap,
                         device=device, engine=engine, torch_flags=_listed(torch_options))
    with err_console.status("benchmarking") as status:
        report = run_bench(config, on_step=lambda text: status.update(text))
    if json_out is not None:
        write_bytes_atomic(json_out, (json.dumps(report, indent=2) + "\n").encode())
    _render(report)
    if json_out is not None:
        console.print(f"report: {escape(str(json_out))}")


def _listed(value: Optional[str]) -> tuple[str, ...]:
    """A comma-separated option as a tuple (empty for none)."""
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _render(report: dict) -> None:
    machine = report["machine"]
    peaks = ", ".join(f"{precision} {gflops:.0f}" for precision, gflops in peak_gflops(report).items() if gflops)
    load = report.get("load_average", {})
    loads = f"; load {load['start'][0]:.1f} -> {load['end'][0]:.1f}" if load else ""
    table = Table(title=f"bratsx bench: {len(report['cases'])} case(s), {report['tile_gflop']:.0f} GFLOP per tile, "
                        f"{machine['cpu']} x{machine['cores']} (measured peak GFLOP/s: {peaks}{loads})")
    entries = report["backends"].values()
    referenced = any("dice_vs_reference" in entry for entry in entries)
    peers = report.get("peers", [])
    columns = ["backend", "window", "device", "build s", "tiles/s", "GFLOP/s (% peak)", "case p50 s", "case p95 s",
               "cases/min", "RSS MB", *(f"vs {peer}" for peer in peers), *(f"agreement {peer}" for peer in peers),
               "agreement fp32 tiles", *(["Dice vs reference WT/TC/ET"] if referenced else [])]
    for column in columns:
        table.add_column(column, justify="left" if column in ("backend", "window", "device") else "right")
    for name, entry in report["backends"].items():
        gflops = (f"{entry['effective_gflops']:.1f} ({100 * entry['fraction_of_peak']:.0f}%)"
                  if entry.get("fraction_of_peak") is not None else
                  f"{entry['effective_gflops']:.1f}" if entry.get("effective_gflops") else "")
        table.add_row(
            escape(name), entry.get("window", "tiles"), f"{entry['device']} {entry['precision']}",
            f"{entry['build_s']:.1f}", f"{entry['tiles_per_s']:.2f}" if entry.get("tiles_per_s") else "", gflops,
            f"{entry['case_p50_s']:.1f}", f"{entry['case_p95_s']:.1f}",
            f"{entry['cases_per_min']:.2f}" if entry.get("cases_per_min") else "", f"{entry['peak_rss_mb']:.0f}",
            *(ratio_text(entry, peer) for peer in peers),
            *(per_region(entry.get(f"agreement_with_{peer}")) for peer in peers),
            per_region(entry.get("agreement_with_fp32_tiles")),
            *([per_region(entry.get("dice_vs_reference"))] if referenced else []),
        )
    console.print(table)
    _render_peaks(report)
    _render_stages(report.get("stage_table"))


def _render_peaks(report: dict) -> None:
    """The measured and theoretical peaks per precision (this round's reports; round 2's had the numpy GEMM)."""
    peaks = report.get("peaks")
    if peaks is None:
        return
    theoretical = peaks["theoretical"]
    library = peaks["library"]["library"] if peaks["library"] else "nothing (OpenVINO is not installed)"
    table = Table(title=f"peaks, GFLOP/s: measured with {library}; theoretical at {theoretical['mhz']:.0f} MHz x "
                        f"{theoretical['cores']} cores")
    for column in ("precision", "measured", "MatMul", "3D conv", "theoretical", "measured / theoretical", "basis"):
        table.add_column(column, justify="left" if column in ("precision", "basis") else "right")
    for precision, measured in peaks["measured_gflops"].items():
        runs = (peaks["library"] or {}).get("operations", {}).get(precision, {})
        ran = [f"{runs[op]['gflops']:.0f} ({runs[op]['runtime_precision']})" if op in runs else ""
               for op in ("matmul", "conv3d")]
        ideal, ratio = theoretical["gflops"][precision], peaks["measured_over_theoretical"][precision]
        table.add_row(precision, f"{measured:.0f}" if measured else "", *ran, f"{ideal:.0f}" if ideal else "",
                      f"{100 * ratio:.0f}%" if ratio else "", escape(theoretical["basis"][precision]))
    console.print(table)


def _render_stages(stages: Optional[dict]) -> None:
    """Where the fastest counted row's case time goes, stage by stage."""
    if stages is None:
        return
    table = Table(title=f"stage times of the fastest counted row, {escape(stages['row'])} (mean per case "
                        f"{stages['case_mean_s']:.2f} s)")
    for column in ("stage", "s", "share", ""):
        table.add_column(column, justify="left" if column in ("stage", "") else "right")
    for name, seconds in stages["seconds"].items():
        flag = "above 10%, outside the network" if name in stages["above_10_percent"] else ""
        table.add_row(name, f"{seconds:.3f}", f"{100 * stages['share'][name]:.0f}%", flag)
    console.print(table)
