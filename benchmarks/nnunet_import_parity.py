"""Parity and speed of ``bratsx import nnunet`` against nnU-Net v2's own predictor on the same results folder.

For each fixture results folder (made by nnU-Net itself: ``tests/nnunet_fixtures.py``), the folder is imported,
then every case is segmented by nnU-Net's predictor (its own stages: read, preprocess, sliding window, export,
write) and by bratsx (``segment_case`` + ``write_label_map``, as ``bratsx infer`` runs them) on each backend. Both
written label files are read back and compared per region (WT, TC, ET: nnU-Net's raw labels through the
dataset's label set, bratsx's through the case's BraTS convention); each row also counts the voxels where the two
label maps differ and how many of them nnU-Net's own probabilities leave undecided (within its fp16 noise of the
decision: ``undecided_by_nnunet``), so a Dice below 1 says whether it is nnU-Net's rounding or a real difference.
Seconds per case are wall times on this
machine, both runs in one process, one after the other. Settings are fold sets (``--folds all,0``: every fold
averaged, then fold 0 alone) times mirroring (``--mirroring off,on``); ``--mirroring-cases`` caps the cases run with
mirroring (8 passes per tile: nnU-Net's mirrored prediction of a real volume takes minutes on a small CPU).
``--nnunet-float32`` also runs nnU-Net's predictor with its sums in float32 (``nnunet_sums_in_float32``: its logit
and weight buffers and its Gaussian, float16 in stock nnU-Net) and records both tools' Dice against that run: what
stock nnU-Net's own rounding moves, beside what bratsx differs by. The report is rewritten after every row, so a
run stopped early keeps what it measured.

    python benchmarks/nnunet_import_parity.py --fixtures DIR --cases ../shared/data/brats2018 --n 2 \
        --folds all,0 --mirroring off,on --mirroring-cases 1 --out benchmarks/results/nnunet_import_parity-DATE.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from nnunet_fixtures import DATASETS, build_fixtures, results_folder  # noqa: E402

from bratsx.atomic import write_bytes_atomic  # noqa: E402
from bratsx.bench.machine import machine_info  # noqa: E402
from bratsx.bench.nnunet_reference import (  # noqa: E402
    nnunet_results_predictor,
    nnunet_segment_case,
    nnunet_sums_in_float32,
    undecided_by_nnunet,
)
from bratsx.cases import discover_cases  # noqa: E402
from bratsx.imageio import read_label_file, write_label_map  # noqa: E402
from bratsx.importers.nnunet import import_nnunet  # noqa: E402
from bratsx.importers.options import NnunetImport  # noqa: E402
from bratsx.labels import OutputMode, regions_from_labels  # noqa: E402
from bratsx.metrics import dice  # noqa: E402
from bratsx.runtime import open_model  # noqa: E402
from bratsx.runtime.runner import Runner  # noqa: E402
from bratsx.runtime.segment import SegmentOptions, segment_case  # noqa: E402


def _regions_dice(ours: np.ndarray, theirs: np.ndarray) -> list[float]:
    return [round(dice(ours[i], theirs[i]), 6) for i in range(3)]


def _nnunet_regions(folder: Path, case, regions) -> np.ndarray:
    raw, _ = read_label_file(folder / f"{case.case_id}.nii.gz", case.case_id)
    return np.stack([np.isin(raw, values) for values in regions])


def measure(fixtures: Path, cases: list, backends: list[str], folds: tuple[int, ...] | None, mirroring: bool,
            scratch: Path, on_row, float32: bool = False) -> None:
    """One row per (dataset, backend, case) for one setting: Dice per region and both tools' seconds."""
    for dataset in DATASETS:
        results = results_folder(fixtures, dataset)
        setting = f"{dataset.folder}-folds{'all' if folds is None else '-'.join(map(str, folds))}"
        model = scratch / setting
        if not model.exists():
            started = time.perf_counter()
            import_nnunet(results, model, NnunetImport(folds=folds))
            (model.parent / f"{setting}.seconds").write_text(str(time.perf_counter() - started))
        import_seconds = float((model.parent / f"{setting}.seconds").read_text())
        predictor = nnunet_results_predictor(results, folds, mirroring=mirroring)
        nnunet_out = scratch / f"{setting}-{mirroring}-nnunet"
        nnunet_out.mkdir()
        float32_out = scratch / f"{setting}-{mirroring}-nnunet-float32"
        float32_out.mkdir()
        opened = {backend: open_model(model, backend) for backend in backends}
        contract = opened[backends[0]].contract
        for case in cases:
            load = os.getloadavg()[0]
            probabilities_file = nnunet_out / f"{case.case_id}-probabilities.npy"
            seconds = nnunet_segment_case(predictor, case, nnunet_out, contract.modality_order, probabilities_file)
            theirs = _nnunet_regions(nnunet_out, case, contract.model_labels["regions"])
            wide = None
            if float32:
                with nnunet_sums_in_float32():
                    seconds_float32 = nnunet_segment_case(predictor, case, float32_out, contract.modality_order)
                wide = _nnunet_regions(float32_out, case, contract.model_labels["regions"])
            undecided = undecided_by_nnunet(np.load(probabilities_file), contract.output_mode is OutputMode.REGIONS)
            probabilities_file.unlink()
            for backend, model_open in opened.items():
                started = time.perf_counter()
                runner = Runner.from_backends([model_open.backend], contract, SegmentOptions(tta=mirroring))
                result = segment_case(case, runner)
                path = write_label_map(result.labels, result.loaded.geometry,
                                       scratch / f"{setting}-{mirroring}-{backend}-{case.case_id}.nii.gz")
                bratsx_seconds = time.perf_counter() - started
                ours_labels, _ = read_label_file(path, case.case_id)
                ours = regions_from_labels(ours_labels, result.convention)
                differing = (ours != theirs).any(axis=0)
                against_float32 = {} if wide is None else {
                    "dice_wt_tc_et_vs_nnunet_float32_sums": _regions_dice(ours, wide),
                    "voxels_differing_vs_nnunet_float32_sums": int((ours != wide).any(axis=0).sum()),
                    "nnunet_stock_dice_wt_tc_et_vs_float32_sums": _regions_dice(theirs, wide),
                    "seconds_nnunet_float32_sums": round(sum(seconds_float32.values()), 2)}
                on_row({"dataset": dataset.folder, "backend": backend, "case": case.case_id,
                        "folds": list(contract.source["folds"]), "mirroring": mirroring,
                        "dice_wt_tc_et": _regions_dice(ours, theirs),
                        "voxels_wt_tc_et_nnunet": [int(r.sum()) for r in theirs],
                        "voxels_differing": int(differing.sum()),
                        "voxels_differing_undecided_by_nnunet": int((differing & undecided).sum()),
                        "seconds_nnunet": round(sum(seconds.values()), 2),
                        "seconds_nnunet_stages": {k: round(v, 2) for k, v in seconds.items()},
                        "seconds_bratsx": round(bratsx_seconds, 2), "seconds_bratsx_stages":
                        {k: round(v, 2) for k, v in result.seconds.items()},
                        "import_seconds": round(import_seconds, 1), **against_float32,
                        "load_average_1min": [round(load, 2), round(os.getloadavg()[0], 2)]})
        for model_open in opened.values():
            model_open.close()


def _fold_sets(text: str) -> list[tuple[int, ...] | None]:
    return [None if item == "all" else tuple(int(f) for f in item.split("+")) for item in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, required=True, help="fixture root (built there when absent)")
    parser.add_argument("--cases", type=Path, default=ROOT.parent / "shared" / "data" / "brats2018")
    parser.add_argument("--n", type=int, default=2, help="how many cases")
    parser.add_argument("--backends", default="ort,openvino")
    parser.add_argument("--folds", default="all", help="fold sets, e.g. all,0 (or 0+1)")
    parser.add_argument("--mirroring", default="off", help="off, on, or off,on")
    parser.add_argument("--mirroring-cases", type=int, default=None, help="at most this many cases with mirroring")
    parser.add_argument("--nnunet-float32", action="store_true",
                        help="also compare both tools with nnU-Net's predictor summing in float32")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    build_fixtures(args.fixtures)
    cases = discover_cases(args.cases)[:args.n]
    report = {"command": " ".join(sys.argv), "machine": machine_info(), "cases": str(args.cases), "rows": [],
              "note": "fixture networks trained by nnU-Net on synthetic cases (tests/nnunet_fixtures.py), run on the "
                      "real cases: parity is exact-semantics evidence, not accuracy; times are of these tiny networks "
                      "on a shared 2-core machine (load average beside each row), not a speed comparison"}

    def on_row(row: dict) -> None:
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
        write_bytes_atomic(args.out, (json.dumps(report, indent=2) + "\n").encode())

    with tempfile.TemporaryDirectory(prefix="bratsx-nnunet-parity-") as scratch:
        for mirroring in [m == "on" for m in args.mirroring.split(",")]:
            for folds in _fold_sets(args.folds):
                chosen = cases[:args.mirroring_cases] if mirroring and args.mirroring_cases else cases
                measure(args.fixtures, chosen, args.backends.split(","), folds, mirroring, Path(scratch), on_row,
                        args.nnunet_float32)


if __name__ == "__main__":
    main()
