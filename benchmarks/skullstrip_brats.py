"""Skull stripping checked on tumour brains: deepbet (ONNX) masks of the BraTS T1 volumes against their brain.

The BraTS volumes are already skull-stripped, so the non-zero region is the reference brain; the issue's
bar is Dice >= 0.95 on every case. Writes ``results/skullstrip_brats-<date>.json``.
Run: ``python benchmarks/skullstrip_brats.py [BRATS2018_FOLDER]``.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from bratsx.bench.machine import machine_info
from bratsx.prepare.skullstrip import brain_mask, onnx_from_deepbet


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/data/brats2018"
    networks = onnx_from_deepbet()
    rows = []
    for path in sorted(folder.glob("*/*_t1.nii.gz")):
        volume = nib.as_closest_canonical(nib.load(path)).get_fdata(dtype=np.float32)
        start = time.perf_counter()
        mask = brain_mask(volume, networks)
        seconds = time.perf_counter() - start
        brain = volume > 0
        dice = 2 * float((mask & brain).sum()) / float(mask.sum() + brain.sum())
        rows.append({"case": path.parent.name, "dice": round(dice, 4), "seconds": round(seconds, 1),
                     "mask_ml": round(mask.sum() / 1000, 1), "brain_ml": round(brain.sum() / 1000, 1)})
        print(rows[-1], flush=True)
    dices = [r["dice"] for r in rows]
    summary = {"cases": rows, "min_dice": min(dices), "mean_dice": round(float(np.mean(dices)), 4),
               "all_at_least_0.95": min(dices) >= 0.95, "input": "T1, 1 mm BraTS grid (RAS-canonical)",
               "command": " ".join(sys.argv), "machine": machine_info()}
    out = Path(__file__).with_name("results") / f"skullstrip_brats-{datetime.date.today()}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "cases"}))


if __name__ == "__main__":
    main()
