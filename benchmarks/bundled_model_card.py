"""The bundled model's card, measured: held-out Dice, latency per case, geometry of the outputs.

Run by ``package_bundled.sh`` after the export. It makes the model folder's ``source`` independent of
the machine it was trained on (no absolute paths: the training command and split instead), then runs
the bundled model exactly as a user would (``RunnerSpec`` + ``run_batch``, the auto backend) on the
held-out BraTS 2018 cases without post-processing (Dice against the expert labels, whole-case and BraTS
2023 lesion-wise) and, with the folder's post-processing, on the two real unlabelled cases (latency, and
that each output keeps its input's shape, affine and orientation), and writes one JSON with the machine.

    python benchmarks/bundled_model_card.py MODEL_DIR --run RUN --held-out DIR --real DIR --out RESULT.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from bratsx.atomic import write_bytes_atomic
from bratsx.bench.machine import machine_info
from bratsx.cases import discover_cases
from bratsx.modelfolder import MODEL_JSON
from bratsx.postprocess import postprocess_override
from bratsx.runtime import ModelSpec, RunnerSpec, SegmentOptions, run_batch
from bratsx.runtime.records import case_seconds
from bratsx.runtime.summary import aggregate

REGIONS = ("WT", "TC", "ET")


def portable_source(model_dir: Path, run: Path, checkpoint: str) -> dict:
    """Replace the machine-specific parts of ``model.json`` with how to reproduce the model.

    Those are the source (run and checkpoint paths) and the folder each gate ran on (a temporary
    folder of links to the held-out cases). A fine-tuned run (``--init``) keeps the source of the model
    it started from under ``fine_tuned_from``, so the card adds up the whole training.
    """
    info = json.loads((model_dir / MODEL_JSON).read_text())
    config = json.loads((run / "config.json").read_text())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    validated = [r for r in records if "val_dice_mean" in r]
    best = max(validated, key=lambda r: r["val_dice_mean"])
    script = "finetune_bundled.sh" if config.get("init") else "train_bundled.sh"
    info["source"] = {
        "description": f"13 BraTS 2018 cases, 2-core CPU (benchmarks/{script})",
        "command": f"bash benchmarks/{script} && CHECKPOINT={checkpoint} bash benchmarks/package_bundled.sh",
        "split": "benchmarks/brats2018_split.json",
        "checkpoint": checkpoint,
        "checkpoint_sha256": info["source"].get("checkpoint_sha256"),
        "features": config["features"], "patch": config["patch"], "steps": records[-1]["step"],
        "best_epoch": best["epoch"], "training_hours": sum(r["seconds"] for r in records) / 3600,
    }
    if config.get("init"):
        started_from = Path(config["init"])
        started_from = started_from if started_from.is_dir() else started_from.parent
        info["source"]["fine_tuned_from"] = json.loads((started_from / MODEL_JSON).read_text())["source"]
    for gate in info["gates"].values():
        if "calibration" in gate:
            gate["calibration"] = "the held-out cases of benchmarks/brats2018_split.json"
    write_bytes_atomic(model_dir / MODEL_JSON, (json.dumps(info, indent=2) + "\n").encode())
    return info["source"]


def run_cases(model_dir: Path, cases_dir: Path, out: Path, postprocess: str) -> tuple[list, dict]:
    """``run_batch`` as ``bratsx infer --postprocess POSTPROCESS`` runs it; the records and the backend used."""
    with RunnerSpec(ModelSpec(paths=(model_dir,))).open() as runner:
        runner = runner.with_options(SegmentOptions(postprocess=postprocess_override(postprocess,
                                                                                    runner.contract.postprocess)))
        result = run_batch(discover_cases(cases_dir), runner, out)
        identity = runner.identity
        backend = {"backend": identity["backend"], "device": identity["device"], "precision": identity["precision"],
                   "file": Path(identity["files"][0]).name, "postprocess": postprocess}
    return result.records, {**backend, "wall_s": result.wall_seconds}


def same_geometry(output: Path, source: Path) -> bool:
    written, original = nib.load(output), nib.load(source)
    return (written.shape == original.shape and np.allclose(written.affine, original.affine)
            and nib.aff2axcodes(written.affine) == nib.aff2axcodes(original.affine))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which one was exported")
    parser.add_argument("--held-out", type=Path, required=True)
    parser.add_argument("--real", type=Path, required=True)
    parser.add_argument("--fp16-gate", type=Path, help="what the fp16 export said (its refusal, when it refused)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    source = portable_source(args.model_dir, args.run, args.checkpoint)
    with tempfile.TemporaryDirectory() as scratch:
        # the held-out Dice before any post-processing (whether or not the folder holds a tuned spec yet: its effect
        # is measured leave-one-out by postprocess_loo.py); the real cases as a user runs them
        held_out, held_backend = run_cases(args.model_dir, args.held_out, Path(scratch) / "held-out", "none")
        real, real_backend = run_cases(args.model_dir, args.real, Path(scratch) / "real", "model")
        cases = {c.case_id: c for c in discover_cases(args.real)}
        geometry = {r.case_id: same_geometry(Path(scratch) / "real" / r.output,
                                             next(iter(cases[r.case_id].images.values()))) for r in real}
    stats = aggregate(held_out)
    result = {
        "date": datetime.date.today().isoformat(),
        "command": "bash benchmarks/package_bundled.sh",
        "model": args.model_dir.name,
        "model_bytes": {p.name: p.stat().st_size for p in sorted(args.model_dir.iterdir())},
        "source": source,
        "gates": json.loads((args.model_dir / MODEL_JSON).read_text())["gates"],
        "fp16_export": (args.fp16_gate.read_text().strip() if args.fp16_gate and args.fp16_gate.is_file() else None)
        or "passed",
        "held_out": {
            **held_backend,
            "dice_mean": {r: stats[f"dice_{r}"]["mean"] for r in REGIONS},
            "lesion_dice_mean": {r: stats[f"lesion_dice_{r}"]["mean"] for r in REGIONS},
            "hd95_mean": {r: stats[f"hd95_{r}"]["mean"] for r in REGIONS},
            "cases": {r.case_id: {"dice": {g: r.metrics[f"dice_{g}"] for g in REGIONS},
                                  "lesion_dice": {g: r.metrics[f"lesion_dice_{g}"] for g in REGIONS},
                                  "seconds": r.seconds} for r in held_out},
        },
        "real": {**real_backend,
                 "cases": {r.case_id: {"seconds": r.seconds, "total_s": case_seconds(r.seconds),
                                       "volumes_ml": r.volumes_ml, "same_geometry_as_input": geometry[r.case_id]}
                           for r in real}},
        "machine": machine_info(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"held_out_dice": result["held_out"]["dice_mean"], "real": {
        k: (round(v["total_s"], 1), v["same_geometry_as_input"]) for k, v in result["real"]["cases"].items()}}))


if __name__ == "__main__":
    main()
