"""Post-processing tuned on data, measured honestly: leave-one-out over the bundled model's held-out cases.

Segments each held-out case of ``brats2018_split.json`` once with the bundled model (no post-processing),
then, for each tuning metric (lesion-wise Dice, Dice), tunes a spec on all cases but one and scores the one
left out, for every case; it also reports the spec tuned on all of them (what ``bratsx postprocess tune``
would write) and its in-sample scores, which are optimistic and marked so. Writes one JSON; with
``--write-bundled`` it also stores the lesion-wise spec tuned on all of them in the bundled model folder.

    python benchmarks/postprocess_loo.py --data /work/shared/data/brats2018 --out results/postprocess_loo-DATE.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np

from bratsx.atomic import write_bytes_atomic
from bratsx.bench.machine import machine_info
from bratsx.cases import discover_cases
from bratsx.postprocess_tuning import (
    TuneMetric,
    TuningCase,
    collect_tuning_cases,
    leave_one_out,
    score_table,
    tune_folder,
    tune_spec,
)
from bratsx.workspace import bundled_models

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the BraTS 2018 cases folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--cache", type=Path, help="an .npz keeping the predictions between runs (not a result)")
    parser.add_argument("--write-bundled", action="store_true",
                        help="store the lesion-wise spec tuned on all held-out cases in the bundled model folder, "
                             "as bratsx postprocess tune does (only worth it when leave-one-out shows a gain)")
    args = parser.parse_args()

    held_out = set(json.loads((HERE / "brats2018_split.json").read_text())["val"])
    cases = [case for case in discover_cases(args.data) if case.case_id in held_out]
    model = bundled_models()[0]
    started = time.perf_counter()
    if args.cache and args.cache.is_file():
        with np.load(args.cache) as stored:
            tuning_cases = [TuningCase(case.case_id, stored[f"{case.case_id}/prediction"],
                                       stored[f"{case.case_id}/reference"],
                                       tuple(stored[f"{case.case_id}/spacing"])) for case in cases]
    else:
        tuning_cases = collect_tuning_cases(model.path, cases, args.backend)
        if args.cache:
            np.savez_compressed(args.cache, **{f"{c.case_id}/{what}": getattr(c, what) for c in tuning_cases
                                               for what in ("prediction", "reference", "spacing")})
    predicted = time.perf_counter() - started
    result = {"command": "python benchmarks/postprocess_loo.py", "model": model.name,
              "cases": [c.case_id for c in tuning_cases], "prediction_seconds": predicted, "metrics": {}}
    for metric in TuneMetric:
        started = time.perf_counter()
        loo = leave_one_out(tuning_cases, metric)
        spec = tune_spec(tuning_cases, metric)
        result["metrics"][metric.value] = {
            "leave_one_out": {"before": loo.before, "after": loo.after,
                              "specs": {case: s.to_dict() for case, s in loo.specs.items()},
                              "per_case_after": {c.case_id: score_table([c], loo.specs[c.case_id])
                                                 for c in tuning_cases},
                              "per_case_before": {c.case_id: score_table([c], tune_spec([], metric))
                                                  for c in tuning_cases}},
            "tuned_on_all": {"spec": spec.to_dict(), "in_sample_after": score_table(tuning_cases, spec)},
            "search_seconds": time.perf_counter() - started,
        }
    if args.write_bundled:
        tune_folder(model.path, tuning_cases, TuneMetric.LESION_WISE, with_leave_one_out=True)
        result["bundled_spec_written"] = True
    result["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result["machine"] = machine_info()
    write_bytes_atomic(args.out, (json.dumps(result, indent=1) + "\n").encode())
    print(json.dumps({m: v["leave_one_out"] | {"specs": None, "per_case_after": None, "per_case_before": None}
                      for m, v in result["metrics"].items()}, indent=1))


if __name__ == "__main__":
    main()
