"""The README's round-3 Performance tables, as markdown, from the results files of ``bench_round3.sh``.

    python benchmarks/round3_tables.py [DATE]      (default: the newest round3_*.json of each kind)

The bench rows render as round 2's (``round2_tables.table``); round 3 adds the peaks (measured with OpenVINO's
oneDNN, and theoretical), the stage table of the fastest counted row, and what each int8 choice bought on the
held-out gate. Nothing is typed by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from round2_tables import RESULTS, table

REGIONS = ("WT", "TC", "ET")


def peaks_table(peaks: dict) -> str:
    """Measured and theoretical peak per precision."""
    library = peaks["library"] or {"library": "no library", "operations": {}}
    lines = [f"Measured with {library['library']}, threads pinned; theoretical at {peaks['theoretical']['mhz']:.0f} "
             f"MHz ({peaks['theoretical']['mhz_source']}).", "",
             "| precision | measured peak | MatMul | 3D convolution | theoretical | measured / theoretical | basis |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for precision, measured in peaks["measured_gflops"].items():
        runs = library["operations"].get(precision, {})
        cells = [f"{runs[op]['gflops']:.0f} ({runs[op]['runtime_precision']}, {runs[op]['kernel']})" if op in runs
                 else "" for op in ("matmul", "conv3d")]
        ideal, ratio = peaks["theoretical"]["gflops"][precision], peaks["measured_over_theoretical"][precision]
        lines.append(f"| {precision} | {measured or 0:.0f} GFLOP/s | {cells[0]} | {cells[1]} | {ideal or 0:.0f} | "
                     f"{100 * (ratio or 0):.0f}% | {peaks['theoretical']['basis'][precision]} |")
    return "\n".join(lines)


def stage_lines(stages: dict | None) -> str:
    """The stage table of the fastest counted row."""
    if stages is None:
        return "(no counted row with stage times)"
    lines = [f"Fastest counted row: {stages['row']}, {stages['case_mean_s']:.2f} s per case (mean).", "",
             "| stage | s | share |", "| --- | --- | --- |"]
    for name, seconds in stages["seconds"].items():
        flag = " (above 10%, outside the network)" if name in stages["above_10_percent"] else ""
        lines.append(f"| {name} | {seconds:.3f} | {100 * stages['share'][name]:.0f}%{flag} |")
    return "\n".join(lines)


def int8_table(report: dict) -> str:
    """One row per int8 choice: its held-out gate and its speed against bf16."""
    lines = [f"Model {report['model']}; gate {report['gate_threshold']} on held-out cases; bf16 "
             f"{report['tiles_per_s']['bf16']:.2f} tiles/s, f32 {report['tiles_per_s']['f32']:.2f}.", "",
             "| choice | calibration cases | convolutions kept in f32 | Dice vs fp32 (worst held-out) WT / TC / ET | "
             "gate | tiles/s | vs bf16 per tile |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, choice in report["choices"].items():
        dice = " / ".join(f"{choice['dice'][r]:.4f}" for r in REGIONS)
        lines.append(f"| {name} ({choice['method']}) | {len(choice['calibration_cases'])} | "
                     f"{len(choice['kept_in_f32'])} | {dice} | {'passed' if choice['passed'] else 'failed'} | "
                     f"{choice['tiles_per_s']:.2f} | {choice['speed_vs_bf16_per_tile']:.2f}x |")
    return "\n".join(lines)


def _newest(pattern: str) -> Path | None:
    found = sorted(RESULTS.glob(pattern))
    return found[-1] if found else None


def main(date: str | None = None) -> None:
    day = date or ""
    fullsize = _newest(f"round3_fullsize-{day}*.json")
    if fullsize is not None:
        print(f"### The full-size nnU-Net model against nnU-Net v2 on its own results folder\n\n{table(fullsize)}\n")
    fullsize_mirror = _newest(f"round3_fullsize_mirror-{day}*.json")
    if fullsize_mirror is not None:
        print(f"### The full-size nnU-Net model, mirroring on\n\n{table(fullsize_mirror)}\n")
    peers = _newest(f"round3_peers-{day}*.json")
    if peers is not None:
        report = json.loads(peers.read_text())
        print(f"### The bundled model against nnU-Net v2\n\n{table(peers)}\n\n### Peaks\n\n"
              f"{peaks_table(report['peaks'])}\n\n### Stage times\n\n{stage_lines(report.get('stage_table'))}\n")
    mirror = _newest(f"round3_mirror-{day}*.json")
    if mirror is not None:
        print(f"### Mirroring on\n\n{table(mirror)}\n")
    int8 = _newest(f"round3_int8_gate-{day}*.json") or _newest(f"int8_gate-{day}*.json")
    if int8 is not None:
        print(f"### INT8 behind the held-out gate\n\n`{int8.name}`: {int8_table(json.loads(int8.read_text()))}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
