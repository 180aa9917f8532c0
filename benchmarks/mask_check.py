"""Calibration of the tumour cut-off check (``bratsx.prepare.maskcheck``) on tumour brains.

On the 16 BraTS 2018 cases (skull already removed: the non-zero region is the true brain) the check must
stay quiet on masks that are right or a little tight, and fire on masks that cut a tumour:

* ``intact``: the true brain; ``eroded_2mm``, ``eroded_3mm``: uniformly tight masks (deepbet's masks of these
  cases have Dice 0.959 at worst, about 1 mm of boundary); ``deepbet``: deepbet's own mask of the case's T1
  (``--deepbet``);
* ``cut_q50``, ``cut_q75``, ``cut_q90``: the brain beyond a plane through the tumour removed; the plane is
  perpendicular to the line from the brain's centre to the tumour's, at the 50th, 75th and 90th percentile of
  the tumour's voxels along that line (the larger, the less tumour is cut off).

Then the raw case TCGA-FG-6692 is prepared through the real pipeline (deepbet mask), whose check must pass.
Writes ``results/mask_check-<date>.json``; ``--resummarise FILE`` recounts which masks the check stops in an
earlier results file under the current :data:`~bratsx.prepare.maskcheck.MAX_CUT_OFF_ML`, without measuring
again (the limit is chosen from the measured numbers).
Run: ``python benchmarks/mask_check.py [--deepbet] [BRATS2018_FOLDER] [RAW_FOLDER]``.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from bratsx.bench.machine import machine_info
from bratsx.prepare import PrepareOptions, prepare_input
from bratsx.prepare.maskcheck import BRIGHT, MAX_CUT_OFF_ML, OPEN_MM, SHELL_MM, T1_AT_MOST, TIGHT_MM, cut_off_ml
from bratsx.prepare.skullstrip import brain_mask, onnx_from_deepbet

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CUTS = (0.5, 0.75, 0.9)


def _read(case: Path, name: str) -> np.ndarray:
    return nib.as_closest_canonical(nib.load(case / f"{case.name}_{name}.nii.gz")).get_fdata(dtype=np.float32)


def _cut(brain: np.ndarray, tumour: np.ndarray, quantile: float) -> np.ndarray:
    """``brain`` without what lies beyond a plane through the tumour (see the module's docstring)."""
    grid = np.indices(brain.shape).reshape(3, -1).T.astype(np.float32)
    centre, focus = grid[brain.ravel()].mean(axis=0), grid[tumour.ravel()].mean(axis=0)
    direction = (focus - centre) / np.linalg.norm(focus - centre)
    along = (grid @ direction).reshape(brain.shape)
    return brain & (along < np.quantile(along[tumour], quantile))


def _eroded(brain: np.ndarray, mm: int) -> np.ndarray:
    ball = np.linalg.norm(np.indices((2 * mm + 1,) * 3) - mm, axis=0) <= mm
    return ndimage.binary_erosion(brain, ball)


def brats_rows(folder: Path, deepbet: bool) -> list[dict]:
    networks = onnx_from_deepbet() if deepbet else None
    rows = []
    for case in sorted(p for p in folder.iterdir() if p.is_dir()):
        flair, t1 = _read(case, "flair"), _read(case, "t1")
        brain = np.any([_read(case, m) > 0 for m in ("flair", "t1", "t1ce", "t2")], axis=0)
        tumour = _read(case, "seg") > 0
        masks = {"intact": brain, **{f"eroded_{mm}mm": _eroded(brain, mm) for mm in (2, 3)}}
        if networks is not None:
            masks["deepbet"] = brain_mask(t1, networks)
        masks.update({f"cut_q{round(q * 100)}": _cut(brain, tumour, q) for q in CUTS})
        row = {"case": case.name, "tumour_ml": round(tumour.sum() / 1000, 1), "brain_ml": round(brain.sum() / 1000, 1)}
        for name, mask in masks.items():
            found = cut_off_ml(flair, t1, mask, (1.0, 1.0, 1.0))
            row[name] = {"cut_off_ml": found.cut_off_ml, "tumour_removed_ml": round((tumour & ~mask).sum() / 1000, 1),
                         "mask_ml": round(mask.sum() / 1000, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def raw_rows(folder: Path) -> list[dict]:
    out = Path(tempfile.mkdtemp(prefix="mask-check-"))
    rows = []
    for result in prepare_input(folder, out, PrepareOptions(pictures=False, max_cut_off_ml=float("inf"))):
        rows.append({"case": result.case_id, "error": result.error,
                     "mask_check": result.record and result.record["mask_check"],
                     "brain_ml": result.record and result.record["brain_ml"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def summarise(result: dict) -> dict:
    """``result`` with ``fires`` on every mask and the per-scenario counts, under the current limit."""
    rows = result["brats2018"]
    scenarios = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    for row in rows:
        for name in scenarios:
            row[name]["fires"] = row[name]["cut_off_ml"] > MAX_CUT_OFF_ML
    for row in result["raw"]:
        if row.get("mask_check"):  # measured without stopping (an infinite limit); judged here
            row["mask_check"]["limit_ml"] = MAX_CUT_OFF_ML
            row["fires"] = row["mask_check"]["cut_off_ml"] > MAX_CUT_OFF_ML
    result["summary"] = {name: {"fired": sum(r[name]["fires"] for r in rows), "of": len(rows),
                                "cut_off_ml_min": min(r[name]["cut_off_ml"] for r in rows),
                                "cut_off_ml_max": max(r[name]["cut_off_ml"] for r in rows)} for name in scenarios}
    result["settings"] = {"bright": BRIGHT, "t1_at_most": T1_AT_MOST, "open_mm": OPEN_MM, "tight_mm": TIGHT_MM,
                          "shell_mm": SHELL_MM, "max_cut_off_ml": MAX_CUT_OFF_ML}
    return result


def main() -> None:
    if sys.argv[1:2] == ["--resummarise"]:
        out = Path(sys.argv[2])
        result = summarise(json.loads(out.read_text()))
    else:
        args = [a for a in sys.argv[1:] if a != "--deepbet"]
        brats = Path(args[0]) if args else SHARED / "brats2018"
        raw = Path(args[1]) if len(args) > 1 else SHARED / "raw"
        start = time.perf_counter()
        rows = brats_rows(brats, "--deepbet" in sys.argv)
        raw_cases = raw_rows(raw)
        result = summarise({"brats2018": rows, "raw": raw_cases, "seconds": round(time.perf_counter() - start, 1),
                            "loadavg": os.getloadavg(), "command": " ".join(sys.argv), "machine": machine_info()})
        out = Path(__file__).with_name("results") / f"mask_check-{datetime.date.today()}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
