"""A MONAI bundle for the import tests, in MONAI's bundle format, without downloads.

The configs follow the model zoo's ``brats_mri_segmentation`` (``configs/metadata.json`` and
``configs/inference.json``: SegResNet with blocks 1-2-2-4 down and 1-1-1 up, 4 input channels T1c, T1, T2, FLAIR,
3 sigmoid outputs TC, WT, ET, ``NormalizeIntensityd(nonzero=True, channel_wise=True)``, a ``SlidingWindowInferer``
with overlap 0.5, and its post-processing: sigmoid, ``Invertd``, threshold 0.5, the labels painted 4 / 1 / 2 and
saved), with what the zoo's version leaves out and its documentation asks for (``Orientationd`` to RAS and
``Spacingd`` to 1 mm), and sized for tests: ``init_filters`` 8 and a 32^3 window, so that a 40^3 case takes
several windows. ``models/model.pt`` holds the network's state dict with seeded random weights.

Rebuild with ``python tests/monai_fixtures.py OUT_DIR``; tests call :func:`write_bundle`.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

#: The model zoo's label painting (channel 2 ET -> 4, else channel 0 TC -> 1, else channel 1 WT -> 2).
LABEL_PAINTING = ("$lambda x: torch.where(x[[2]] > 0, 4, torch.where(x[[0]] > 0, 1, torch.where(x[[1]] > 0, 2, "
                  "0)))")
#: Window of the fixture's inferer.
ROI_SIZE = [32, 32, 32]

METADATA: dict[str, Any] = {
    "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
    "version": "0.0.1",
    "changelog": {"0.0.1": "bratsx test fixture after brats_mri_segmentation"},
    "monai_version": "1.6.1",
    "name": "BraTS MRI segmentation (bratsx test fixture)",
    "task": "Multimodal Brain Tumor segmentation",
    "description": "random weights, for the import tests only",
    "image_classes": "4 channel data, T1c, T1, T2, FLAIR at 1x1x1 mm",
    "label_classes": "3 channel data, channel 0 for Tumor core, channel 1 for Whole tumor, channel 2 for Enhancing "
                     "tumor",
    "network_data_format": {
        "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "MR", "num_channels": 4,
                             "spatial_shape": ["8*n", "8*n", "8*n"], "dtype": "float32", "value_range": [],
                             "is_patch_data": True,
                             "channel_def": {"0": "T1c", "1": "T1", "2": "T2", "3": "FLAIR"}}},
        "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 3,
                             "spatial_shape": ["8*n", "8*n", "8*n"], "dtype": "float32", "value_range": [0, 1],
                             "is_patch_data": True,
                             "channel_def": {"0": "Tumor core", "1": "Whole tumor", "2": "Enhancing tumor"}}},
    },
}

INFERENCE: dict[str, Any] = {
    "imports": ["$import glob", "$import os"],
    "bundle_root": ".",
    "output_dir": "$@bundle_root + '/eval'",
    "device": "$torch.device('cpu')",
    "network_def": {"_target_": "SegResNet", "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1],
                    "init_filters": 8, "in_channels": 4, "out_channels": 3, "dropout_prob": 0.2},
    "network": "$@network_def.to(@device)",
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "image", "image_only": False},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": [1.0, 1.0, 1.0], "mode": "bilinear"},
        {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True},
    ]},
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": ROI_SIZE, "sw_batch_size": 1, "overlap": 0.5},
    "postprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
         "meta_keys": "pred_meta_dict", "nearest_interp": False, "to_tensor": True},
        {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5},
        {"_target_": "Lambdad", "keys": "pred", "func": LABEL_PAINTING},
        {"_target_": "SaveImaged", "keys": "pred", "meta_keys": "pred_meta_dict", "output_dir": "@output_dir",
         "output_postfix": "seg", "output_dtype": "uint8", "resample": False, "squeeze_end_dims": True},
    ]},
}


def write_bundle(out: Path, seed: int = 0, inference: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None) -> Path:
    """Write the fixture bundle (or one with a changed ``inference`` or ``metadata``) into ``out``.

    The weights are SegResNet's own initialisation under ``torch.manual_seed(seed)``, saved as a plain state dict.
    """
    import torch
    from monai.bundle import ConfigParser

    inference = copy.deepcopy(inference or INFERENCE)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "configs" / "metadata.json").write_text(json.dumps(metadata or METADATA, indent=4))
    (out / "configs" / "inference.json").write_text(json.dumps(inference, indent=4))
    torch.manual_seed(seed)
    network = ConfigParser({"network_def": inference["network_def"]}).get_parsed_content("network_def")
    torch.save(network.state_dict(), out / "models" / "model.pt")
    return out


def changed(path: str, value: Any, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``config`` (the fixture's inference config) with the entry at ``path`` (``"a#b#0"``, MONAI's id
    separator) replaced by ``value``."""
    config = copy.deepcopy(config or INFERENCE)
    *parents, last = path.split("#")
    node: Any = config
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return config


if __name__ == "__main__":
    print(write_bundle(Path(sys.argv[1])))
