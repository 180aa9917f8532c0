"""The raw case end to end: prepare -> the bundled model -> back to each native grid; times per stage.

Prepares every case under ``INPUT`` (default ``../shared/data/raw``) into ``OUT`` (default a temporary
folder), segments each prepared case with the bundled model on ONNX Runtime, maps the segmentation back
to every native sequence grid, checks each native output has its input's exact shape and affine (NIfTI
inputs), and writes ``results/prepare_raw-<date>.json``.
Run: ``python benchmarks/prepare_raw.py [INPUT] [OUT]``.
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from bratsx.bench.machine import machine_info
from bratsx.cases import discover_cases
from bratsx.imageio import write_label_map
from bratsx.prepare import PrepareOptions, prepare_input, segmentation_to_native
from bratsx.runtime import open_model, segment_case

BUNDLED = Path(__file__).resolve().parents[1] / "bratsx" / "models" / "brats2018-cpu"


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/data/raw"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="prepare-raw-"))
    start = time.perf_counter()
    prepared = prepare_input(source, out / "prepared", PrepareOptions())
    rows = []
    with open_model(BUNDLED, backend="ort") as model:
        for result in prepared:
            if result.error:
                rows.append({"case": result.case_id, "error": result.error})
                continue
            [case] = [c for c in discover_cases(out / "prepared") if c.case_id == result.case_id]
            began = time.perf_counter()
            segmented = segment_case(case, [model.backend], model.contract)
            atlas_seg = out / "segmentations" / f"{case.case_id}.nii.gz"
            atlas_seg.parent.mkdir(parents=True, exist_ok=True)
            write_label_map(segmented.labels, segmented.loaded.geometry, atlas_seg)
            segment_seconds = time.perf_counter() - began
            began = time.perf_counter()
            native = segmentation_to_native(result.folder, atlas_seg, out / "native")
            native_seconds = time.perf_counter() - began
            exact = {}
            for name, info in result.record["sequences"].items():
                if info["source"] == "nifti":
                    given, written = nib.load(info["files"][0]), nib.load(native.segmentations[name])
                    exact[name] = bool(given.shape == written.shape and np.array_equal(given.affine, written.affine))
            rows.append({"case": result.case_id, "prepare_seconds": result.record["seconds"],
                         "prepare_seconds_total": result.record["seconds_total"],
                         "prepare_cpu_seconds": result.record["cpu_seconds"],
                         "prepare_cpu_seconds_total": result.record["cpu_seconds_total"],
                         "registration": result.record["registration"], "brain_ml": result.record["brain_ml"],
                         "segment_seconds": round(segment_seconds, 2), "native_seconds": round(native_seconds, 2),
                         "native_exact_geometry": exact, "native_volumes_ml": native.volumes_ml, "out": str(out)})
    summary = {"command": " ".join(sys.argv), "cases": rows, "total_seconds": round(time.perf_counter() - start, 1),
               "machine": machine_info(), "note": "wall times include other jobs sharing the CPU; cpu_seconds is "
                                                  "the process' own CPU time"}
    target = Path(__file__).with_name("results") / f"prepare_raw-{datetime.date.today()}.json"
    target.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
