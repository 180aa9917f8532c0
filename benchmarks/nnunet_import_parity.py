"""Parity and speed of ``bratsx import nnunet`` against nnU-Net v2's own predictor on the same results folder.

For each fixture results folder (made by nnU-Net itself: ``tests/nnunet_fixtures.py``), the folder is imported,
then every case is segmented by nnU-Net's predictor (its own stages: read, preprocess, sliding window, export,
write) and by bratsx (``segment_case`` + ``write_label_map``, as ``bratsx infer`` runs them) on each backend. Both
written label files are read back and compared per region (WT, TC, ET: nnU-Net's raw labels through the
dataset's label set, bratsx's through the case's BraTS convention). Seconds per case are wall times on this
machine, both runs in one process, one after the other.

    python benchmarks/nnunet_import_parity.py --fixtures DIR --cases ../shared/data/brats2018 --n 2 \
        --out benchmarks/results/nnunet_import_parity-DATE.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from nnunet_fixtures import DATASETS, build_fixtures, results_folder  # noqa: E402

from bratsx.bench.machine import machine_info  # noqa: E402
from bratsx.bench.nnunet_reference import nnunet_results_predictor, nnunet_segment_case  # noqa: E402
from bratsx.cases import discover_cases  # noqa: E402
from bratsx.imageio import read_label_file, write_label_map  # noqa: E402
from bratsx.importers.nnunet import import_nnunet  # noqa: E402
from bratsx.labels import regions_from_labels  # noqa: E402
from bratsx.metrics import dice  # noqa: E402
from bratsx.runtime import open_model  # noqa: E402
from bratsx.runtime.runner import Runner  # noqa: E402
from bratsx.runtime.segment import SegmentOptions, segment_case  # noqa: E402


def _regions_dice(ours: np.ndarray, theirs: np.ndarray) -> list[float]:
    return [round(dice(ours[i], theirs[i]), 6) for i in range(3)]


def measure(fixtures: Path, cases_dir: Path, n: int, backends: list[str], mirroring: bool, scratch: Path) -> list:
    """One row per (dataset, backend, case): Dice per region and both tools' seconds."""
    cases = discover_cases(cases_dir)[:n]
    rows = []
    for dataset in DATASETS:
        results = results_folder(fixtures, dataset)
        model = scratch / dataset.folder
        started = time.perf_counter()
        import_nnunet(results, model)
        import_seconds = time.perf_counter() - started
        predictor = nnunet_results_predictor(results, mirroring=mirroring)
        nnunet_out = scratch / f"{dataset.folder}-nnunet"
        nnunet_out.mkdir()
        opened = {backend: open_model(model, backend) for backend in backends}
        contract = opened[backends[0]].contract
        for case in cases:
            seconds = nnunet_segment_case(predictor, case, nnunet_out, contract.modality_order)
            raw, _ = read_label_file(nnunet_out / f"{case.case_id}.nii.gz", case.case_id)
            theirs = np.stack([np.isin(raw, values) for values in contract.model_labels["regions"]])
            for backend, model_open in opened.items():
                started = time.perf_counter()
                runner = Runner.from_backends([model_open.backend], contract, SegmentOptions(tta=mirroring))
                result = segment_case(case, runner)
                path = write_label_map(result.labels, result.loaded.geometry,
                                       scratch / f"{dataset.folder}-{backend}-{case.case_id}.nii.gz")
                bratsx_seconds = time.perf_counter() - started
                ours_labels, _ = read_label_file(path, case.case_id)
                ours = regions_from_labels(ours_labels, result.convention)
                rows.append({"dataset": dataset.folder, "backend": backend, "case": case.case_id,
                             "folds": list(contract.source["folds"]), "mirroring": mirroring,
                             "dice_wt_tc_et": _regions_dice(ours, theirs),
                             "voxels_wt_tc_et_nnunet": [int(r.sum()) for r in theirs],
                             "seconds_nnunet": round(sum(seconds.values()), 2),
                             "seconds_nnunet_stages": {k: round(v, 2) for k, v in seconds.items()},
                             "seconds_bratsx": round(bratsx_seconds, 2), "seconds_bratsx_stages":
                             {k: round(v, 2) for k, v in result.seconds.items()},
                             "import_seconds": round(import_seconds, 1)})
                print(json.dumps(rows[-1]), flush=True)
        for model_open in opened.values():
            model_open.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, required=True, help="fixture root (built there when absent)")
    parser.add_argument("--cases", type=Path, default=ROOT.parent / "shared" / "data" / "brats2018")
    parser.add_argument("--n", type=int, default=2, help="how many cases")
    parser.add_argument("--backends", default="ort,openvino")
    parser.add_argument("--mirroring", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    build_fixtures(args.fixtures)
    with tempfile.TemporaryDirectory(prefix="bratsx-nnunet-parity-") as scratch:
        rows = measure(args.fixtures, args.cases, args.n, args.backends.split(","), args.mirroring, Path(scratch))
    report = {"command": " ".join(sys.argv), "machine": machine_info(), "cases": str(args.cases), "rows": rows,
              "note": "fixture networks trained by nnU-Net on synthetic cases (tests/nnunet_fixtures.py), run on the "
                      "real cases: parity is exact-semantics evidence, not accuracy; times are of these tiny networks"}
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
