"""Summarise a finished training run (metrics.jsonl) into a small JSON result with machine info.

    python benchmarks/summarize_run.py RUN_DIR --command "..." --seconds N --out result.json
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from bratsx.bench.machine import machine_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--command", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    records = [json.loads(line) for line in (args.run_dir / "metrics.jsonl").read_text().splitlines() if line]
    validated = [r for r in records if "val_dice_mean" in r]
    best = max(validated, key=lambda r: r["val_dice_mean"]) if validated else None
    train_seconds = sum(r["seconds"] for r in records)
    steps = records[-1]["step"] if records else 0
    import torch

    summary = {
        "date": datetime.date.today().isoformat(),
        "command": args.command,
        "wall_seconds": args.seconds,
        "epochs": sum(1 for r in records if not r.get("partial")),
        "steps": steps,
        "it_per_s": steps / train_seconds if train_seconds else None,
        "data_wait_fraction": (sum(r["data_wait_fraction"] * r["seconds"] for r in records) / train_seconds
                               if train_seconds else None),
        "best_epoch": best["epoch"] if best else None,
        "best_val_dice": {k: best[f"val_dice_{k}"] for k in ("WT", "TC", "ET", "mean")} if best else None,
        "last_val_dice": {k: validated[-1][f"val_dice_{k}"] for k in ("WT", "TC", "ET", "mean")} if validated else None,
        "machine": {**machine_info(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
