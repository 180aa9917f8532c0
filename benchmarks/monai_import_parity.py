"""Parity of ``bratsx import monai-bundle`` with the bundle's own inference, on real cases.

The fixture bundle (``tests/monai_fixtures.py``: the model zoo's ``brats_mri_segmentation`` configs, SegResNet with
``init_filters`` 8 and random seeded weights) is written with each window setting below, imported, and every case
is segmented by MONAI (the bundle's own preprocessing, ``SlidingWindowInferer`` and post-processing, through
``monai.bundle.ConfigParser``: :func:`bratsx.bench.monai_reference.bundle_segment_case`) and by bratsx
(``segment_case`` + ``write_label_map``, as ``bratsx infer`` runs them) on each backend. Both label maps are
compared per region (WT, TC, ET). Seconds per case are wall times on this machine, both tools in one process, one
after the other, with the load average beside them: not a speed comparison on a shared machine.

Window settings: the zoo's own ``roi_size`` 240 x 240 x 160 (one window over a BraTS volume, padded), and 128^3
with overlap 0.5 (several windows: MONAI's tile placement and constant blending).

    python benchmarks/monai_import_parity.py --cases ../shared/data/real \
        --out benchmarks/results/monai_import_parity-DATE.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from monai_fixtures import INFERENCE, changed, write_bundle  # noqa: E402

from bratsx.bench.machine import machine_info  # noqa: E402
from bratsx.bench.monai_reference import bundle_segment_case, open_bundle_reference  # noqa: E402
from bratsx.cases import discover_cases  # noqa: E402
from bratsx.imageio import read_label_file, write_label_map  # noqa: E402
from bratsx.importers.monai_bundle import import_monai_bundle  # noqa: E402
from bratsx.labels import LabelConvention, regions_from_labels  # noqa: E402
from bratsx.metrics import dice  # noqa: E402
from bratsx.runtime import open_model  # noqa: E402
from bratsx.runtime.runner import Runner  # noqa: E402
from bratsx.runtime.segment import segment_case  # noqa: E402

#: Window settings measured: name -> (roi_size, overlap).
WINDOWS = {"zoo-240x240x160": ([240, 240, 160], 0.5), "128-overlap-0.5": ([128, 128, 128], 0.5)}


def _bundle(scratch: Path, name: str, roi: list[int], overlap: float) -> Path:
    inference = changed("inferer#overlap", overlap, changed("inferer#roi_size", roi, INFERENCE))
    return write_bundle(scratch / f"bundle-{name}", seed=0, inference=inference)


def measure(cases_dir: Path, backends: list[str], scratch: Path) -> list[dict]:
    """One row per (window, backend, case): Dice per region, MONAI's region volumes, both tools' seconds."""
    cases = discover_cases(cases_dir)
    rows = []
    for name, (roi, overlap) in WINDOWS.items():
        bundle = _bundle(scratch, name, roi, overlap)
        model = scratch / f"model-{name}"
        started = time.perf_counter()
        import_monai_bundle(bundle, model)
        import_seconds = time.perf_counter() - started
        reference = open_bundle_reference(bundle)
        opened = {backend: open_model(model, backend) for backend in backends}
        for case in cases:
            load = os.getloadavg()
            seconds, _, monai_labels = bundle_segment_case(reference, case)
            theirs = regions_from_labels(monai_labels, LabelConvention.BRATS2020)
            for backend, model_open in opened.items():
                started = time.perf_counter()
                runner = Runner.from_backends([model_open.backend], model_open.contract)
                result = segment_case(case, runner)
                path = write_label_map(result.labels, result.loaded.geometry,
                                       scratch / f"{name}-{backend}-{case.case_id}.nii.gz")
                bratsx_seconds = time.perf_counter() - started
                ours = regions_from_labels(read_label_file(path, case.case_id)[0], result.convention)
                rows.append({"window": name, "roi_size": roi, "overlap": overlap, "backend": backend,
                             "case": case.case_id,
                             "dice_wt_tc_et": [round(dice(ours[i], theirs[i]), 6) for i in range(3)],
                             "voxels_wt_tc_et_monai": [int(r.sum()) for r in theirs],
                             "seconds_monai": round(sum(seconds.values()), 2),
                             "seconds_monai_stages": {k: round(v, 2) for k, v in seconds.items()},
                             "seconds_bratsx": round(bratsx_seconds, 2),
                             "seconds_bratsx_stages": {k: round(v, 2) for k, v in result.seconds.items()},
                             "import_seconds": round(import_seconds, 1),
                             "load_average_before": [round(v, 2) for v in load],
                             "load_average_after": [round(v, 2) for v in os.getloadavg()]})
                print(json.dumps(rows[-1]), flush=True)
        for model_open in opened.values():
            model_open.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    parser.add_argument("--backends", default="ort,openvino")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bratsx-monai-parity-") as scratch:
        rows = measure(args.cases, args.backends.split(","), Path(scratch))
    worst = {backend: [min(r["dice_wt_tc_et"][i] for r in rows if r["backend"] == backend) for i in range(3)]
             for backend in args.backends.split(",")}
    report = {"command": " ".join(sys.argv), "machine": machine_info(), "cases": str(args.cases),
              "worst_dice_wt_tc_et": worst, "rows": rows,
              "note": "the fixture bundle (random weights, init_filters 8) on real cases: evidence of MONAI's "
                      "semantics, not accuracy; times taken on a shared 2-core machine (load averages beside them) "
                      "are not a speed comparison"}
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
