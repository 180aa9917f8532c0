"""The peer: what a MONAI user writes to segment a case with the same weights.

The four volumes are loaded with nibabel, turned to the orientation the network was trained in (as
MONAI's ``Orientationd`` would), normalised as the model's contract says (z-score per modality
inside the brain mask; a per-channel ``NormalizeIntensity(nonzero=True)`` differs inside the brain
wherever one modality is 0, and the model was not trained on that), and ``sliding_window_inference``
runs over the full volume (no crop to the brain) with PyTorch eager, Gaussian blending and the same
overlap; the regions are thresholded at 0.5, turned into BraTS labels and saved. Needs torch and monai.
"""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ..cases import Case
from ..contract import ModelContract
from ..geometry import Geometry
from ..labels import MODALITY_ORDER, LabelConvention, labels_from_regions, regions_from_probabilities
from ..preprocessing import brain_mask, zscore_in_mask

__all__ = ["monai_segment_case"]


def monai_segment_case(case: Case, network, contract: ModelContract, out_dir: Path, overlap: float = 0.5,
                       device: str = "cpu") -> dict[str, float]:
    """Segment one case the MONAI way into ``out_dir/<id>.nii.gz``; seconds per stage.

    Args:
        case: the case (its files are read with nibabel).
        network: the PyTorch network (eval mode, on ``device``), returning logits.
        contract: its contract (patch size, output mode).
        out_dir: where the label map goes (BraTS 2018-2021 values).
        overlap: sliding-window overlap.
        device: ``cpu`` or ``cuda``.
    """
    import torch
    from monai.inferers import sliding_window_inference

    patch = contract.patch_size
    seconds = {}
    start = time.perf_counter()
    images = [nib.load(case.images[m]) for m in MODALITY_ORDER]
    geometry = Geometry(tuple(images[0].shape[:3]), images[0].affine, images[0].header)
    volume = np.stack([np.ascontiguousarray(geometry.to_canonical(image.get_fdata(dtype=np.float32)))
                       for image in images])
    seconds["load"] = time.perf_counter() - start
    start = time.perf_counter()
    zscore_in_mask(volume, brain_mask(volume))
    seconds["preprocess"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode():
        logits = sliding_window_inference(torch.from_numpy(volume[None]).to(device), patch, 1, network,
                                          overlap=overlap, mode="gaussian", sigma_scale=0.125)
        probabilities = (torch.sigmoid(logits[0]) if contract.output_mode.value == "regions"
                         else torch.softmax(logits[0], dim=0)).cpu().numpy()
    seconds["inference"] = time.perf_counter() - start
    start = time.perf_counter()
    regions = regions_from_probabilities(probabilities, contract.output_mode)
    labels = labels_from_regions(regions, LabelConvention.BRATS2020)
    seconds["postprocess"] = time.perf_counter() - start
    start = time.perf_counter()
    header = images[0].header.copy()
    header.set_data_dtype(np.uint8)
    stored = np.asfortranarray(geometry.from_canonical(labels))
    nib.save(nib.Nifti1Image(stored, images[0].affine, header), out_dir / f"{case.case_id}.nii.gz")
    seconds["write"] = time.perf_counter() - start
    return seconds
