"""How much does a model's segmentation depend on where the sliding-window tiles fall?

``bratsx bench --compare monai`` counts a speed ratio only where bratsx and MONAI agree (Dice >= 0.99
per region). The two tile differently: bratsx tiles the brain's bounding box with evenly spread
tiles, MONAI the full 240x240x155 volume with its own grid. With the same weights and the same
normalisation, any difference left is the model's own sensitivity to tile placement (each tile is
instance-normalised on its own content). This script measures that sensitivity directly, with one
network (PyTorch eager, fp32) and four placements:

- ``bratsx_box``: ``segment_case`` over the brain box (exactly what ``bratsx infer`` does);
- ``bratsx_full``: bratsx's planner over the full volume;
- ``monai_full``: MONAI's ``sliding_window_inference`` over the full volume (the bench's peer);
- ``monai_box``: MONAI's ``sliding_window_inference`` over the brain box;

and reports the per-region Dice between every pair of outputs and, for cases with a reference
label, each placement's Dice against it.

    python benchmarks/tile_placement.py RUN_OR_CHECKPOINT CASES_DIR [--json OUT]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from bratsx.bench.machine import machine_info
from bratsx.cases import discover_cases
from bratsx.labels import regions_from_labels, regions_from_probabilities
from bratsx.metrics import region_dice
from bratsx.preprocessing import brain_mask, paste, zscore_in_mask
from bratsx.runtime.backends import TorchBackend
from bratsx.runtime.runner import Runner
from bratsx.runtime.segment import PreparedCase, SegmentOptions, prepare_case, segment_case
from bratsx.sliding_window import sliding_window_predict

OVERLAP = 0.5


def placements(prepared: PreparedCase, backend: TorchBackend) -> dict[str, np.ndarray]:
    """Probabilities of one prepared case under the four tile placements."""
    patch, image = backend.contract.patch_size, prepared.loaded.image
    box = prepared.ready
    full = zscore_in_mask(image.copy(), brain_mask(image))

    def monai(volume: np.ndarray) -> np.ndarray:
        run = lambda tiles: torch.from_numpy(backend.run(tiles.numpy()))  # noqa: E731
        with torch.inference_mode():
            return sliding_window_inference(torch.from_numpy(volume[None]), patch, 1, run, overlap=OVERLAP,
                                            mode="gaussian", sigma_scale=0.125)[0].numpy()

    return {
        "bratsx_box": segment_case(prepared, Runner.from_backends([backend], backend.contract,
                                                                  SegmentOptions(overlap=OVERLAP, sw_batch=1)))
        .probabilities,
        "bratsx_full": sliding_window_predict(full, patch, backend.run, OVERLAP, 1, None),
        "monai_full": monai(full),
        "monai_box": paste(monai(box.image), box.box, box.full_shape),
    }


def per_region(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {region.value: value for region, value in region_dice(a, b).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="bratsx run directory or checkpoint")
    parser.add_argument("cases", type=Path, help="folder of cases")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    backend = TorchBackend(args.model)
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(),
              "model": str(args.model), "patch": list(backend.contract.patch_size), "overlap": OVERLAP, "cases": {}}
    for case in discover_cases(args.cases):
        prepared = prepare_case(case, backend.contract)
        loaded = prepared.loaded
        start = time.perf_counter()
        regions = {name: regions_from_probabilities(p, backend.contract.output_mode)
                   for name, p in placements(prepared, backend).items()}
        entry = {"seconds": time.perf_counter() - start,
                 "agreement": {f"{a} vs {b}": per_region(regions[a], regions[b])
                               for a, b in itertools.combinations(regions, 2)}}
        if loaded.label is not None:
            reference = regions_from_labels(loaded.label, loaded.convention)
            entry["dice_vs_reference"] = {name: per_region(r, reference) for name, r in regions.items()}
        report["cases"][case.case_id] = entry
        print(json.dumps({case.case_id: entry}, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
