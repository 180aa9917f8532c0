"""The peer: what a MONAI user writes to segment a case with the same weights.

The four volumes are loaded with nibabel, turned to the orientation the network was trained in (as
MONAI's ``Orientationd`` would), normalised as the model's contract says (z-score per modality
inside the brain mask; a per-channel ``NormalizeIntensity(nonzero=True)`` differs inside the brain
wherever one modality is 0, and the model was not trained on that), and ``sliding_window_inference``
runs over the full volume (no crop to the brain) with PyTorch eager, Gaussian blending and the same
overlap; the regions are thresholded at 0.5, turned into BraTS labels and saved. Needs torch and monai.

A model folder imported from a MONAI bundle (``bratsx import monai-bundle``) is compared with the bundle itself
instead: :func:`open_bundle_reference` opens it through ``monai.bundle.ConfigParser`` and
:func:`bundle_segment_case` runs its own preprocessing, inferer and post-processing, as MONAI's bundle inference
does (without ignite's evaluator loop, and with the label map written by bratsx in place of ``SaveImaged``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..cases import Case
from ..contract import ModelContract
from ..geometry import Geometry
from ..labels import MODALITY_ORDER, labels_from_regions, regions_from_probabilities
from ..preprocessing import brain_mask, zscore_in_mask
from .peer_labels import peer_convention

__all__ = ["BundleReference", "bundle_segment_case", "monai_segment_case", "open_bundle_reference"]


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
    labels = labels_from_regions(regions, peer_convention(contract))
    seconds["postprocess"] = time.perf_counter() - start
    start = time.perf_counter()
    header = images[0].header.copy()
    header.set_data_dtype(np.uint8)
    stored = np.asfortranarray(geometry.from_canonical(labels))
    nib.save(nib.Nifti1Image(stored, images[0].affine, header), out_dir / f"{case.case_id}.nii.gz")
    seconds["write"] = time.perf_counter() - start
    return seconds


@dataclass
class BundleReference:
    """A MONAI bundle opened as MONAI runs it: its network (weights loaded as bratsx imports them), its
    ``preprocessing``, ``inferer`` and ``postprocessing`` instantiated by ``monai.bundle.ConfigParser``, and the
    bratsx modality of each input channel."""

    network: Any
    preprocessing: Any
    inferer: Any
    postprocessing: list[Any]
    modalities: tuple[str, ...]
    device: str = "cpu"


def open_bundle_reference(bundle_dir: Path | str, device: str = "cpu",
                          channels: tuple[str, ...] | None = None) -> BundleReference:
    """Open a MONAI bundle the way its own inference config runs it (needs torch and monai); ``channels``: the
    image of each input channel, as the import named them (``None``: by the metadata's ``channel_def``).

    Raises:
        BratsxError: as :func:`bratsx.importers.monai_bundle.read_bundle_folder`.
    """
    import torch
    from monai.bundle import ConfigParser
    from monai.transforms import SaveImaged

    from ..importers.channels import modalities_for_channels
    from ..importers.monai_bundle import bundle_channel_def, load_bundle_weights, read_bundle_folder

    bundle = read_bundle_folder(bundle_dir)
    parser = ConfigParser()
    parser.read_config(str(bundle.config))
    parser["bundle_root"] = str(bundle.path)
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(load_bundle_weights(bundle.weights))
    network = network.to(torch.device(device)).eval()
    postprocessing = [t for t in parser.get_parsed_content("postprocessing").transforms
                      if not isinstance(t, SaveImaged)]  # the label map is written beside the other peers' outputs
    modalities = channels or modalities_for_channels(bundle_channel_def(bundle.metadata, "inputs", str(bundle.config)))
    return BundleReference(network, parser.get_parsed_content("preprocessing"), parser.get_parsed_content("inferer"),
                           postprocessing, modalities, device)


def bundle_segment_case(reference: BundleReference, case: Case, out_dir: Path | None = None
                        ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Segment one case with a MONAI bundle's own preprocessing, inferer and post-processing.

    Args:
        reference: from :func:`open_bundle_reference`.
        case: the case; its files are given to the bundle's ``LoadImaged`` in the bundle's channel order.
        out_dir: where ``<id>.nii.gz`` (the bundle's label map, in the first file's geometry) goes; ``None``: not
            written.

    Returns:
        Seconds per stage, the probabilities MONAI thresholds (the bundle's output channels, on the input files'
        voxel grid) and the label map on that grid.
    """
    import torch

    seconds = {}
    start = time.perf_counter()
    files = [str(case.images[m]) for m in reference.modalities]
    data = reference.preprocessing({"image": files})
    seconds["load+preprocess"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode():
        data["pred"] = reference.inferer(data["image"][None].to(reference.device), reference.network)[0].cpu()
    seconds["inference"] = time.perf_counter() - start
    start = time.perf_counter()
    probabilities = None
    for transform in reference.postprocessing:
        if probabilities is None and type(transform).__name__ == "AsDiscreted":
            probabilities = np.asarray(data["pred"].detach().cpu().numpy(), dtype=np.float32)
        data = transform(data)
    labels = np.asarray(data["pred"].detach().cpu().numpy()).astype(np.uint8)[0]
    seconds["postprocess"] = time.perf_counter() - start
    if out_dir is not None:
        start = time.perf_counter()
        first = nib.load(files[0])
        header = first.header.copy()
        header.set_data_dtype(np.uint8)
        nib.save(nib.Nifti1Image(labels, first.affine, header), Path(out_dir) / f"{case.case_id}.nii.gz")
        seconds["write"] = time.perf_counter() - start
    return seconds, probabilities, labels
