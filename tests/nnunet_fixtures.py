"""Real nnU-Net v2 results folders for the import tests, made by nnU-Net v2 itself, without downloads.

Each fixture dataset is written in nnU-Net's raw format from bratsx's synthetic cases, fingerprinted, planned
and preprocessed by nnU-Net's own API, its ``3d_fullres`` plans shrunk to a tiny network and patch (so that
CPU training takes seconds), and trained by ``nnUNetTrainer`` itself for a few iterations per fold on the CPU.
What is left is an ordinary results folder: ``plans.json``, ``dataset.json``, ``dataset_fingerprint.json``
and ``fold_N/checkpoint_final.pth``, under the trainer's own name so that ``nnUNetPredictor`` opens it.

The datasets cover what the importer must read:

==============  ==========================================  =================  ==========================
dataset         labels                                      stored spacing     network
==============  ==========================================  =================  ==========================
Dataset901      BraTS regions as Dataset137 (``labels``     1 mm               PlainConvUNet
                with region lists, ``regions_class_order``)
Dataset902      labels 0-3 (BraTS 2023 values)              4 x 1 x 1 mm       ResidualEncoderUNet
                                                            (anisotropic: the
                                                            target spacing is
                                                            not 1 mm, the thick
                                                            axis is resampled
                                                            apart and
                                                            transposed first)
==============  ==========================================  =================  ==========================

Two folds each. Rebuild with ``python tests/nnunet_fixtures.py OUT_DIR``; tests call :func:`build_fixtures`
into pytest's cache (kept between sessions, rebuilt when this file changes).

nnU-Net reads its folders from environment variables fixed at import, so the build runs in a child process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from bratsx.synth import synthesize_case

#: Folds trained per dataset.
FOLDS = (0, 1)
#: Training cases per dataset (2 folds of 3 training and 3 validation cases).
CASES = 6
#: Shape of a synthetic case at 1 mm, before any slice thinning.
CASE_SHAPE = (48, 48, 32)
#: Iterations of nnU-Net's trainer: enough for confident logits (few voxels near the 0.5 threshold, where nnU-Net's
#: fp16 accumulation of logits decides) and for every region to be predicted, far from a useful model. Every patch
#: is drawn around tumour, at ten times nnU-Net's learning rate: at twice it, 100-300 iterations left some builds
#: predicting no tumour at all (the label network never did: Dice 0 on every label after 300 iterations), at ten
#: times it both networks predict every region within about 100 iterations.
ITERATIONS_PER_EPOCH, VALIDATION_ITERATIONS = 10, 1
FOREGROUND_PATCHES, LEARNING_RATE = 1.0, 0.1
#: Seed of each fold's training (torch, numpy and Python's generators; augmentation runs in the trainer's own
#: process on one thread), so that a rebuild gives the same networks.
SEED = 23
#: The results folder name nnU-Net's predictor expects for a 3d_fullres training with the default trainer.
RESULTS_FOLDER = "nnUNetTrainer__nnUNetPlans__3d_fullres"


@dataclass(frozen=True)
class FixtureDataset:
    """One fixture dataset: its id, name, label scheme, voxel step along x (thick slices), network class, channel
    names and training epochs (the softmax label network needs more to predict any tumour)."""

    dataset_id: int
    name: str
    regions: bool
    x_step: int
    network: str
    channel_names: tuple[str, str, str, str]
    epochs: int

    @property
    def folder(self) -> str:
        """nnU-Net's dataset folder name."""
        return f"Dataset{self.dataset_id:03d}_{self.name}"


#: Channel order of a synthetic case's image (bratsx's modality order).
_SYNTH_CHANNELS = ("flair", "t1", "t1ce", "t2")

DATASETS = (
    FixtureDataset(901, "SynthRegions", regions=True, x_step=1,
                   network="dynamic_network_architectures.architectures.unet.PlainConvUNet",
                   channel_names=("T1", "T1ce", "T2", "Flair"), epochs=20),  # Dataset137's names and order
    FixtureDataset(902, "SynthLabels", regions=False, x_step=4,
                   network="dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
                   channel_names=("t2f", "t1n", "t1c", "t2w"), epochs=30),  # BraTS 2023 file suffixes
)


def results_folder(root: Path, dataset: FixtureDataset) -> Path:
    """The trained configuration folder of ``dataset`` under a fixture root."""
    return root / "nnUNet_results" / dataset.folder / RESULTS_FOLDER


def fixture_fingerprint() -> str:
    """Hash of this file: a cached fixture root is rebuilt when the recipe changes."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _nnunet_labels(labels_2023: np.ndarray, regions: bool) -> np.ndarray:
    """Synthetic BraTS 2023 labels (1 NCR, 2 edema, 3 ET) in the dataset's label values.

    Region datasets use Dataset137's conversion (edema 1, necrosis 2, enhancing 3); label datasets keep 2023's.
    """
    if not regions:
        return labels_2023.astype(np.uint8)
    lookup = np.array([0, 2, 1, 3], dtype=np.uint8)
    return lookup[labels_2023]


def _write_nifti(volume: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = nib.Nifti1Image(volume, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)


def write_raw_dataset(raw_root: Path, dataset: FixtureDataset) -> None:
    """Write ``dataset``'s synthetic training cases and ``dataset.json`` in nnU-Net's raw format."""
    folder = raw_root / dataset.folder
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    order = [_SYNTH_CHANNELS.index(_bratsx_name(name)) for name in dataset.channel_names]
    for index in range(CASES):
        case = synthesize_case(CASE_SHAPE, seed=dataset.dataset_id, index=index)
        affine = case.affine.copy()
        affine[:3, 0] *= dataset.x_step
        case_id = f"case_{index:03d}"
        for channel, source in enumerate(order):
            _write_nifti(case.image[source, ::dataset.x_step], affine,
                         folder / "imagesTr" / f"{case_id}_{channel:04d}.nii.gz")
        _write_nifti(_nnunet_labels(case.labels[::dataset.x_step], dataset.regions), affine,
                     folder / "labelsTr" / f"{case_id}.nii.gz")
    if dataset.regions:
        labels = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
    else:
        labels = {"background": 0, "necrotic core": 1, "edema": 2, "enhancing tumor": 3}
    description = {"channel_names": {str(i): name for i, name in enumerate(dataset.channel_names)},
                   "labels": labels, "numTraining": CASES, "file_ending": ".nii.gz"}
    if dataset.regions:
        description["regions_class_order"] = [1, 2, 3]
    (folder / "dataset.json").write_text(json.dumps(description, indent=2))


def _bratsx_name(channel_name: str) -> str:
    return {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair",
            "t2f": "flair", "t1n": "t1", "t1c": "t1ce", "t2w": "t2"}[channel_name.lower()]


def shrink_plans(plans: dict, dataset: FixtureDataset) -> dict:
    """``plans`` with ``3d_fullres`` reduced to a 3-stage network (4-8-16 features) on a small patch.

    Stage strides follow the spacing: the anisotropic dataset, whose thick axis nnU-Net transposes first, keeps
    that axis at full resolution in the first two stages, as nnU-Net's planner does for thick slices.
    """
    configuration = plans["configurations"]["3d_fullres"]
    anisotropic = dataset.x_step > 1
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2]] if anisotropic else [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    kernels = [[1, 3, 3], [3, 3, 3], [3, 3, 3]] if anisotropic else [[3, 3, 3]] * 3
    configuration["patch_size"] = [8, 32, 32] if anisotropic else [32, 32, 24]
    configuration["batch_size"] = 2
    arch = configuration["architecture"]
    kwargs = arch["arch_kwargs"]
    kwargs.update(n_stages=3, features_per_stage=[4, 8, 16], kernel_sizes=kernels, strides=strides,
                  n_conv_per_stage_decoder=[1, 1])
    if dataset.network.endswith("ResidualEncoderUNet"):
        kwargs.pop("n_conv_per_stage", None)
        kwargs["n_blocks_per_stage"] = [1, 1, 1]
    else:
        kwargs["n_conv_per_stage"] = [1, 1, 1]
    arch["network_class_name"] = dataset.network
    return plans


def _build_in_this_process(root: Path) -> None:
    """Plan, preprocess and train every fixture dataset (nnU-Net's folders must already be in the environment)."""
    import random

    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    torch.set_num_threads(1)
    for dataset in DATASETS:
        if all((results_folder(root, dataset) / f"fold_{f}" / "checkpoint_final.pth").is_file() for f in FOLDS):
            continue
        os.environ["nnUNet_n_proc_DA"] = "1"  # the planner sets torch's threads to it
        write_raw_dataset(root / "nnUNet_raw", dataset)
        extract_fingerprint_dataset(dataset.dataset_id, num_processes=1, check_dataset_integrity=True)
        plan_experiment_dataset(dataset.dataset_id)
        plans_file = root / "nnUNet_preprocessed" / dataset.folder / "nnUNetPlans.json"
        plans_file.write_text(json.dumps(shrink_plans(json.loads(plans_file.read_text()), dataset), indent=2))
        preprocess_dataset(dataset.dataset_id, configurations=("3d_fullres",), num_processes=(1,))
        dataset_json = json.loads((root / "nnUNet_preprocessed" / dataset.folder / "dataset.json").read_text())
        os.environ["nnUNet_n_proc_DA"] = "0"  # augment in the trainer's process (the planner needs >= 1)
        for fold in FOLDS:
            for generator in (torch.manual_seed, np.random.seed, random.seed):
                generator(SEED + fold)
            plans = json.loads(plans_file.read_text())
            plans["continue_training"] = False
            trainer = nnUNetTrainer(plans=plans, configuration="3d_fullres", fold=fold, dataset_json=dataset_json,
                                    device=torch.device("cpu"))
            trainer.num_epochs = dataset.epochs
            trainer.num_iterations_per_epoch = ITERATIONS_PER_EPOCH
            trainer.num_val_iterations_per_epoch = VALIDATION_ITERATIONS
            trainer.oversample_foreground_percent = FOREGROUND_PATCHES
            trainer.initial_lr = LEARNING_RATE
            trainer.run_training()


def build_fixtures(root: Path) -> Path:
    """Build (or reuse) the fixture results folders under ``root``, in a child process; returns ``root``.

    Raises:
        RuntimeError: nnU-Net's build failed; its output is in ``root/build.log``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ, nnUNet_raw=str(root / "nnUNet_raw"),
                       nnUNet_preprocessed=str(root / "nnUNet_preprocessed"),
                       nnUNet_results=str(root / "nnUNet_results"), nnUNet_compile="f",
                       OMP_NUM_THREADS="1")
    with open(root / "build.log", "ab") as log:
        done = subprocess.run([sys.executable, __file__, "--in-process", str(root)], env=environment,
                              stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"nnU-Net fixture build failed (exit {done.returncode}); see {root / 'build.log'}")
    return root


if __name__ == "__main__":
    if sys.argv[1] == "--in-process":
        _build_in_this_process(Path(sys.argv[2]))
    else:
        print(build_fixtures(Path(sys.argv[1])))
