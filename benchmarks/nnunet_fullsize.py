"""A full-size nnU-Net v2 model of the real BraTS 2018 cases, made by nnU-Net itself: the model users run, for the
round-3 headline table (bratsx imported vs nnUNetPredictor on the same results folder).

nnU-Net's own pipeline, with its default planner (so ``3d_fullres`` is what nnU-Net plans for these cases: a
PlainConvUNet with 32-320 features and 128^3 patches for BraTS), on the 16 cases in ``../shared/data/brats2018``
written in nnU-Net's raw format as BraTS region datasets are (Dataset137's label conversion: edema 1, necrosis 2,
enhancing 3; regions WT [1, 2, 3], TC [2, 3], ET [3]; channels T1, T1ce, T2, FLAIR). Fold 0 is bratsx's own split
(``benchmarks/brats2018_split.json``: 13 training, 3 held-out cases); fold 1 (``--fold 1``, trained after fold 0 into
the same results folder, so that an import can average both as nnU-Net does) holds out the last 3 of fold 0's
training cases and trains on the other 13; both are written as ``splits_final.json``.

Training is short, because this is a 2-core CPU: ``--epochs`` x ``--iterations`` steps of nnU-Net's own trainer
(its loss, augmentation, SGD with poly schedule and learning rate), with CPU bf16 autocast (nnU-Net turns autocast
on only on CUDA; the trainer's fallback context is swapped for ``torch.autocast("cpu", bfloat16)``). Far from a
converged nnU-Net, but a network whose outputs follow the tumour, which is what agreement must be measured on.
The report (``--out``) records the plans, the per-epoch losses and pseudo-Dice, and the time.

    python benchmarks/nnunet_fullsize.py --root ~/nnunet-fullsize --epochs 3 --iterations 20 \
        --out benchmarks/results/nnunet_fullsize-DATE.json

One iteration (batch 2 of 128^3 patches, forward and backward, augmentation in the same process) takes about 30 s
on the 2-core CPU, so the default 3 x 20 iterations take about half an hour.

nnU-Net reads its folders from environment variables fixed at import, so they are set before nnunetv2 is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATASET_ID, DATASET = 910, "Dataset910_BraTS2018"
#: Channel order and names of nnU-Net's BraTS region dataset (Dataset137): bratsx's BraTS 2018 file suffixes.
CHANNELS = (("T1", "t1"), ("T1ce", "t1ce"), ("T2", "t2"), ("Flair", "flair"))
#: BraTS 2018 label values (1 necrosis, 2 edema, 4 enhancing) to Dataset137's (2 necrosis, 1 edema, 3 enhancing).
LABEL_MAP = {0: 0, 1: 2, 2: 1, 4: 3}


def write_raw(raw_root: Path, data: Path, case_ids: list[str]) -> None:
    """The cases in nnU-Net's raw format: images linked, labels converted, ``dataset.json`` as Dataset137's."""
    import nibabel as nib
    import numpy as np

    folder = raw_root / DATASET
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    for case_id in case_ids:
        for channel, (_, suffix) in enumerate(CHANNELS):
            link = folder / "imagesTr" / f"{case_id}_{channel:04d}.nii.gz"
            if not link.exists():
                link.symlink_to((data / case_id / f"{case_id}_{suffix}.nii.gz").resolve())
        target = folder / "labelsTr" / f"{case_id}.nii.gz"
        if not target.exists():
            label = nib.load(data / case_id / f"{case_id}_seg.nii.gz")
            values = np.asarray(label.dataobj).astype(np.uint8)
            converted = np.zeros_like(values)
            for source, value in LABEL_MAP.items():
                converted[values == source] = value
            nib.save(nib.Nifti1Image(converted, label.affine, label.header), target)
    description = {"channel_names": {str(i): name for i, (name, _) in enumerate(CHANNELS)},
                   "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
                   "regions_class_order": [1, 2, 3], "numTraining": len(case_ids), "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(description, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder for nnUNet_raw/_preprocessed/_results")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "brats2018")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20, help="training iterations per epoch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--fold", type=int, choices=(0, 1), default=0, help="which fold of splits_final.json")
    parser.add_argument("--out", type=Path, required=True, help="the report (JSON)")
    args = parser.parse_args()
    root = args.root.expanduser().resolve()
    for name in ("raw", "preprocessed", "results"):
        os.environ[f"nnUNet_{name}"] = str(root / f"nnUNet_{name}")
    os.environ.setdefault("nnUNet_compile", "f")
    split = json.loads((HERE / "brats2018_split.json").read_text())
    started = time.time()
    write_raw(root / "nnUNet_raw", args.data, split["train"] + split["val"])

    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )

    preprocessed = root / "nnUNet_preprocessed" / DATASET
    if not (preprocessed / "nnUNetPlans_3d_fullres").is_dir():
        os.environ["nnUNet_n_proc_DA"] = "1"
        extract_fingerprint_dataset(DATASET_ID, num_processes=args.threads, check_dataset_integrity=True)
        plan_experiment_dataset(DATASET_ID)
        preprocess_dataset(DATASET_ID, configurations=("3d_fullres",), num_processes=(args.threads,))
    splits = [{"train": split["train"], "val": split["val"]},
              {"train": split["train"][:-3] + split["val"], "val": split["train"][-3:]}]
    (preprocessed / "splits_final.json").write_text(json.dumps(splits))
    prepared = time.time()

    torch.set_num_threads(args.threads)
    os.environ["nnUNet_n_proc_DA"] = "0"  # augmentation in the trainer's process: 2 cores have no spare one
    trainer_module.dummy_context = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text()) | {"continue_training": False}
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    torch.manual_seed(0)
    trainer = trainer_module.nnUNetTrainer(plans=plans, configuration="3d_fullres", fold=args.fold,
                                           dataset_json=dataset_json, device=torch.device("cpu"))
    trainer.num_epochs, trainer.num_iterations_per_epoch = args.epochs, args.iterations
    trainer.num_val_iterations_per_epoch = 2
    trainer.run_training()
    trained = time.time()

    configuration = plans["configurations"]["3d_fullres"]
    logged = trainer.logger.local_logger.my_fantastic_logging
    report = {
        "command": " ".join(sys.argv), "root": str(root), "dataset": DATASET, "fold": args.fold,
        "split": splits[args.fold],
        "plans_3d_fullres": {key: configuration[key] for key in ("patch_size", "batch_size", "spacing")}
        | {"network": configuration["architecture"]["network_class_name"],
           "features_per_stage": configuration["architecture"]["arch_kwargs"]["features_per_stage"]},
        "training": {"epochs": args.epochs, "iterations_per_epoch": args.iterations, "autocast": "cpu bfloat16",
                     "initial_lr": trainer.initial_lr, "threads": args.threads,
                     "train_losses": [round(float(v), 4) for v in logged["train_losses"]],
                     "val_losses": [round(float(v), 4) for v in logged["val_losses"]],
                     "pseudo_dice_wt_tc_et": [[round(float(d), 4) for d in dice]
                                              for dice in logged["dice_per_class_or_region"]]},
        "seconds": {"prepare": round(prepared - started, 1), "train": round(trained - prepared, 1)},
        "results_folder": str(root / "nnUNet_results" / DATASET / "nnUNetTrainer__nnUNetPlans__3d_fullres"),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["plans_3d_fullres"]), report["seconds"], report["training"]["pseudo_dice_wt_tc_et"][-1:])


if __name__ == "__main__":
    main()
