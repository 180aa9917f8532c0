"""bratsx's lesion-wise metrics against the challenge's own package, ``brats-evaluation`` (PyPI), case by case.

``brats-evaluation`` (0.0.10, the BraTS 2025 evaluation) cannot share bratsx's environment: through
``panoptica`` it pins ``numpy<2.3``, ``pandas<3`` and ``rich<14``. So it lives in a virtualenv of its own,
named by ``--official-python``, and this script hands it the label maps as ``.npy`` files and reads its
results back as JSON. Cases: synthetic edge cases (empty prediction, empty reference, both empty, a lesion
under the 50-voxel floor, touching lesions, a false positive) and, with ``--cache``, the bundled model's
predictions of the 3 held-out BraTS 2018 cases (the cache ``postprocess_loo.py --cache`` writes).

Compared, per case and region (WT, TC, ET): whole-region Dice (bratsx ``dice`` against panoptica's
``global_bin_dsc``); lesion counts; bratsx's BraTS 2023 lesion-wise Dice against the 2025 package's
``lesionwise_dsc_mean`` (``sq_dsc``, the mean Dice over matched lesions only) and against the 2023 formula
rebuilt from its instances (``sq_dsc * tp / (tp + fp + fn)``). Writes one JSON.

    python benchmarks/official_scorer_check.py --official-python VENV/bin/python [--cache C.npz] --out OUT.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bratsx.atomic import write_bytes_atomic
from bratsx.labels import LabelConvention, labels_from_regions, regions_from_labels
from bratsx.lesionwise import lesion_scores
from bratsx.metrics import dice

REGIONS = ("WT", "TC", "ET")
#: Run by the official package's interpreter: label maps in, its per-region results out.
OFFICIAL = r"""
import json, sys
from importlib.resources import files
import numpy as np
from panoptica import Panoptica_Evaluator
from importlib.metadata import version
evaluator = Panoptica_Evaluator.load_from_config(str(files("brats_evaluation").joinpath("configs", "config_gli.yaml")))
out = {"versions": {p: version(p) for p in ("brats-evaluation", "panoptica", "numpy")}, "cases": {}}
for name in json.loads(sys.argv[2]):
    pred = np.load(f"{sys.argv[1]}/{name}_pred.npy"); ref = np.load(f"{sys.argv[1]}/{name}_ref.npy")
    result = evaluator.evaluate(pred, ref, verbose=False)
    keys = ("tp", "fp", "fn", "global_bin_dsc", "sq_dsc", "rq", "num_ref_instances", "num_pred_instances")
    out["cases"][name] = {group: {k: v for k, v in r.to_dict(False).items() if k in keys}
                          for group, r in result.items() if group in ("wt", "tc", "et")}
print(json.dumps(out, default=float))
"""


def _blob(shape, *boxes) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for box in boxes:
        mask[tuple(slice(a, b) for a, b in box)] = True
    return mask


def synthetic_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Edge cases as (prediction, reference) label maps in the BraTS 2023 convention (1 NETC, 2 SNFH, 3 ET)."""
    shape = (48, 48, 48)
    tumour = np.zeros(shape, np.uint8)
    tumour[_blob(shape, ((4, 24), (4, 24), (4, 24)))] = 2
    tumour[_blob(shape, ((8, 20), (8, 20), (8, 20)))] = 1
    tumour[_blob(shape, ((10, 16), (10, 16), (10, 16)))] = 3
    shifted = np.roll(tumour, 2, axis=0)
    small = tumour.copy()
    small[_blob(shape, ((40, 43), (40, 43), (40, 43)))] = 2  # a 27-voxel edema lesion, under the 50-voxel floor
    touching = np.zeros(shape, np.uint8)  # two edema lesions 2 voxels apart: one lesion once dilated 3 times
    touching[_blob(shape, ((4, 14), (4, 14), (4, 14)))] = 2
    touching[_blob(shape, ((16, 26), (4, 14), (4, 14)))] = 2
    one_found = touching.copy()
    one_found[16:26] = 0
    with_fp = shifted.copy()
    with_fp[_blob(shape, ((38, 44), (38, 44), (38, 44)))] = 2  # 216 voxels where there is no tumour
    empty = np.zeros(shape, np.uint8)
    return {"empty_prediction": (empty, tumour), "empty_reference": (tumour, empty), "both_empty": (empty, empty),
            "small_lesion_under_floor": (small, small), "small_lesion_missed": (tumour, small),
            "touching_lesions": (one_found, touching), "false_positive": (with_fp, tumour),
            "shifted": (shifted, tumour)}


def real_cases(cache: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The bundled model's held-out predictions (no post-processing), as label maps."""
    cases = {}
    with np.load(cache) as stored:
        for key in sorted(k for k in stored.files if k.endswith("/prediction")):
            case_id = key.split("/")[0]
            convention = LabelConvention.BRATS2023
            cases[case_id] = (labels_from_regions(stored[key], convention),
                              labels_from_regions(stored[f"{case_id}/reference"], convention))
    return cases


def bratsx_scores(prediction: np.ndarray, reference: np.ndarray) -> dict[str, dict[str, float]]:
    convention = LabelConvention.BRATS2023
    pred, ref = regions_from_labels(prediction, convention), regions_from_labels(reference, convention)
    scores = {}
    for channel, region in enumerate(REGIONS):
        lesion = lesion_scores(pred[channel], ref[channel], (1.0, 1.0, 1.0))
        scores[region] = {"dice": dice(pred[channel], ref[channel]), "lesion_dice_2023": lesion.dice,
                          "tp": lesion.true_positives, "fp": lesion.false_positives, "fn": lesion.false_negatives}
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-python", required=True, help="python of a venv with brats-evaluation")
    parser.add_argument("--cache", type=Path, help="postprocess_loo.py's prediction cache (real cases)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    cases = synthetic_cases() | (real_cases(args.cache) if args.cache else {})
    with tempfile.TemporaryDirectory(prefix="bratsx-official-") as scratch:
        for name, (prediction, reference) in cases.items():
            np.save(f"{scratch}/{name}_pred.npy", prediction)
            np.save(f"{scratch}/{name}_ref.npy", reference)
        official = json.loads(subprocess.run([args.official_python, "-c", OFFICIAL, scratch, json.dumps(list(cases))],
                                             check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    rows = {}
    for name, (prediction, reference) in cases.items():
        ours = bratsx_scores(prediction, reference)
        rows[name] = {}
        for region in REGIONS:
            theirs = official["cases"][name][region.lower()]
            counted = theirs["tp"] + theirs["fp"] + theirs["fn"]
            sq = theirs["sq_dsc"]
            rebuilt = (sq if sq == sq else 0.0) * theirs["tp"] / counted if counted else 1.0
            rows[name][region] = {"bratsx": ours[region], "official": theirs, "official_2023_rebuilt": rebuilt,
                                  "dice_difference": ours[region]["dice"] - theirs["global_bin_dsc"],
                                  "lesion_dice_difference_to_rebuilt": ours[region]["lesion_dice_2023"] - rebuilt}
    dice_diffs = [abs(r[g]["dice_difference"]) for r in rows.values() for g in REGIONS
                  if np.isfinite(r[g]["dice_difference"])]
    lesion_diffs = [abs(r[g]["lesion_dice_difference_to_rebuilt"]) for r in rows.values() for g in REGIONS]
    official_nan = [f"{name} {g}" for name, r in rows.items() for g in REGIONS
                    if not np.isfinite(r[g]["official"]["global_bin_dsc"])]
    result = {"command": "python benchmarks/official_scorer_check.py", "official": official["versions"],
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "max_abs_dice_difference_where_official_is_a_number": max(dice_diffs),
              "official_dice_nan": official_nan,
              "max_abs_lesion_dice_difference_to_rebuilt": max(lesion_diffs), "cases": rows}
    write_bytes_atomic(args.out, (json.dumps(result, indent=1, default=float) + "\n").encode())
    for name, row in rows.items():
        print(name, {g: (round(row[g]["bratsx"]["dice"], 6), round(row[g]["official"]["global_bin_dsc"], 6),
                         round(row[g]["bratsx"]["lesion_dice_2023"], 4), row[g]["official"]["sq_dsc"],
                         round(row[g]["official_2023_rebuilt"], 4)) for g in REGIONS})
    print("max |dice diff|", max(dice_diffs), "official NaN:", official_nan, "max |lesion diff to rebuilt|",
          max(lesion_diffs))


if __name__ == "__main__":
    main()
