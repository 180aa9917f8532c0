"""The README's round-2 Performance tables, as markdown, from the JSON reports of ``bench_round2.sh``.

    python benchmarks/round2_tables.py [DATE]      (default: the newest round2_*.json of each table)

Every row comes from one `bratsx bench` report; nothing is typed by hand. Ratios are shown side by side:
the speed ratio to each peer (counted only where the per-region agreement with that peer is >= 0.99,
else marked "not counted"), the agreement with the fp32 tiled row and the Dice against the expert labels.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bratsx.bench.run import peak_gflops, ratio_text

RESULTS = Path(__file__).resolve().parent / "results"
TABLES = {
    "peers": "Trained network (BraTS 2018, 16-128, 96^3): the 3 held-out cases and the real case, mirroring off",
    "mirror": "The same, mirroring on (bratsx --tta against nnU-Net's mirroring)",
    "default": "Default network (32-256, 128^3, random weights) on the real case: the speed goal",
}


def _regions(values: dict | None) -> str:
    return " / ".join(f"{values[r]:.3f}" for r in ("WT", "TC", "ET")) if values else ""


def _share(entry: dict) -> str:
    share = entry.get("fraction_of_peak")
    return f"{100 * share:.0f}%" if share is not None else ""


def table(path: Path) -> str:
    """One markdown table (with its heading line) from one bench report."""
    report = json.loads(path.read_text())
    peers = report.get("peers", [])
    load = report.get("load_average", {})
    peaks = peak_gflops(report)
    lines = [
        f"`{path.name}`: cases {', '.join(report['cases'])}; model {report['model']}; patch "
        f"{'x'.join(map(str, report['patch']))}, {report['tile_gflop']:.0f} GFLOP per tile; TTA/mirroring "
        f"{'on' if report['tta'] else 'off'}; {report['machine']['cpu']} x{report['machine']['cores']}; GEMM peak "
        f"fp32 {peaks['fp32'] or 0:.0f}, bf16 {peaks['bf16'] or 0:.0f} "
        f"GFLOP/s; load average {load.get('start', [0])[0]:.1f} at the start, {load.get('end', [0])[0]:.1f} at the "
        "end.",
        "",
        "| row | window | precision | per case (p50) | inference share | share of GEMM peak | peak RSS | "
        + " | ".join(f"vs {peer}" for peer in peers) + (" | " if peers else "")
        + " | ".join(f"agreement with {peer}" for peer in peers) + (" | " if peers else "")
        + "agreement with fp32 tiles | Dice vs expert labels |",
        "| --- " * (9 + 2 * len(peers)) + "|",
    ]
    for name, entry in report["backends"].items():
        stages = entry["stages_mean_s"]
        inference = stages["inference"] / max(sum(stages.values()), 1e-9)
        cells = [name, entry.get("window", "tiles"), f"{entry['device']} {entry['precision']}",
                 f"{entry['case_p50_s']:.1f} s", f"{100 * inference:.0f}%", _share(entry),
                 f"{entry['peak_rss_mb'] / 1024:.1f} GB", *(ratio_text(entry, peer, "**") for peer in peers),
                 *(_regions(entry.get(f"agreement_with_{peer}")) for peer in peers),
                 _regions(entry.get("agreement_with_fp32_tiles")), _regions(entry.get("dice_vs_reference"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(date: str | None = None) -> None:
    for name, title in TABLES.items():
        found = sorted(RESULTS.glob(f"round2_{name}-{date or ''}*.json"))
        if not found:
            print(f"<!-- no round2_{name} report in {RESULTS} -->\n")
            continue
        print(f"### {title}\n\n`bash benchmarks/bench_round2.sh RUN {name}`\n\n{table(found[-1])}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
