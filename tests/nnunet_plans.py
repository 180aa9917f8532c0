"""Small nnU-Net v2 plans and dataset descriptions written by hand, for tests that need no trained network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Intensity statistics of every channel (CTNormalization reads them).
INTENSITY = {"mean": 400.0, "std": 150.0, "percentile_00_5": 120.0, "percentile_99_5": 900.0, "median": 380.0,
             "min": 10.0, "max": 1500.0}


def plans(*, spacing=(1.0, 1.0, 1.0), transpose=(0, 1, 2), schemes=("ZScoreNormalization",) * 4,
          use_mask=(True,) * 4, patch=(16, 16, 16), configuration="3d_fullres", **overrides: Any) -> dict[str, Any]:
    """nnU-Net plans with one configuration (``overrides`` replace its entries)."""
    backward = [transpose.index(axis) for axis in range(3)]
    entry = {
        "data_identifier": f"nnUNetPlans_{configuration}", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2, "patch_size": list(patch), "median_image_size_in_voxels": list(patch),
        "spacing": list(spacing), "normalization_schemes": list(schemes), "use_mask_for_norm": list(use_mask),
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": 2, "features_per_stage": [4, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
                            "kernel_sizes": [[3, 3, 3]] * 2, "strides": [[1, 1, 1], [2, 2, 2]],
                            "n_conv_per_stage": [1, 1], "n_conv_per_stage_decoder": [1], "conv_bias": True,
                            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                            "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "batch_dice": False,
        **overrides,
    }
    return {"dataset_name": "Dataset999_Test", "plans_name": "nnUNetPlans", "experiment_planner_used": "test",
            "label_manager": "LabelManager", "image_reader_writer": "SimpleITKIO",
            "original_median_spacing_after_transp": list(spacing), "original_median_shape_after_transp": list(patch),
            "transpose_forward": list(transpose), "transpose_backward": backward,
            "configurations": {configuration: entry},
            "foreground_intensity_properties_per_channel": {str(c): dict(INTENSITY) for c in range(len(schemes))}}


def dataset(*, regions: bool = True, channel_names=("T1", "T1ce", "T2", "Flair")) -> dict[str, Any]:
    """A BraTS dataset.json: Dataset137's regions, or labels 0-3 named as BraTS 2023's."""
    if regions:
        labels: dict[str, Any] = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                                  "enhancing tumor": [3]}
    else:
        labels = {"background": 0, "necrotic core": 1, "edema": 2, "enhancing tumor": 3}
    description = {"channel_names": {str(i): n for i, n in enumerate(channel_names)}, "labels": labels,
                   "numTraining": 0, "file_ending": ".nii.gz"}
    if regions:
        description["regions_class_order"] = [1, 2, 3]
    return description


def write_results_folder(root: Path, plans_dict: dict[str, Any], dataset_dict: dict[str, Any], folds=(0,),
                         name: str = "nnUNetTrainer__nnUNetPlans__3d_fullres") -> Path:
    """A results folder with these descriptions and empty fold folders (no checkpoints)."""
    folder = root / "Dataset999_Test" / name
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans_dict))
    (folder / "dataset.json").write_text(json.dumps(dataset_dict))
    (folder / "dataset_fingerprint.json").write_text("{}")
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
    return folder
