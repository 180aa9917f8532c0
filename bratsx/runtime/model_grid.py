"""The model's own grid: what an imported model's framework does around its network, applied in one place.

A model imported from nnU-Net v2 (:mod:`bratsx.importers.nnunet`) or from a MONAI bundle
(:mod:`bratsx.importers.monai_bundle`) expects its framework's preprocessing, and its logits go back to the
case's grid as that framework does them. Its contract says how (:class:`~bratsx.contract.ModelContract`:
``channel_normalization``, ``crop_to_nonzero``, ``canonical_orientation``, ``transpose_forward``,
``target_spacing``, ``resampling``, ``model_labels``), and this module is the one place the runtime reads those
fields:

1. :func:`prepare_on_model_grid` (instead of :func:`bratsx.preprocessing.preprocess`): crop the canonical
   image to its non-zero box (nnU-Net's ``crop_to_nonzero``: any channel non-zero, holes filled; MONAI bundles
   keep the whole volume), reorient it to the orientation the network was trained in (a MONAI bundle's
   ``Orientationd``), transpose it to the network's axes, normalise each channel by its scheme (in the non-zero
   mask where the scheme says), and resample it to the target spacing (:func:`bratsx.resample.resample_to_shape`).
2. :func:`logits_on_case_grid`: the blended logits back to the cropped box's grid (before the activation, as
   nnU-Net) and back to canonical axes; :func:`segment_case` then pastes them as for any model.
3. :func:`regions_from_model_output`: probabilities to nnU-Net's segmentation (regions thresholded at 0.5 and
   painted in ``regions_class_order``, or the arg-max label), then to WT/TC/ET by the model's label set;
   :func:`model_labels_from_regions` writes WT/TC/ET (post-processed) back in the model's own label values
   (``--labels model``).

bratsx's own models (no ``channel_normalization``) pass through untouched. No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform

from ..contract import ModelContract
from ..geometry import CANONICAL_ORIENTATION
from ..labels import BRATS_CHANNELS, OutputMode, regions_from_probabilities
from ..preprocessing import INFERENCE_MARGIN, CropBox, Preprocessed, brain_mask, crop_box, preprocess
from ..resample import Resampling, resample_to_shape, shape_at_spacing

__all__ = ["NNUNET_NORMALIZATION_SCHEMES", "NORMALIZATION_SCHEMES", "logits_on_case_grid", "model_channels",
           "model_labels_from_regions", "normalize_channel", "on_model_grid", "prepare_on_model_grid",
           "raw_segmentation", "regions_from_model_output"]

#: nnU-Net's normalisation schemes the runtime reproduces.
NNUNET_NORMALIZATION_SCHEMES = ("ZScoreNormalization", "CTNormalization", "NoNormalization",
                                "RescaleTo01Normalization")
#: Every scheme the runtime reproduces: nnU-Net's, and MONAI's ``NormalizeIntensity`` (channel-wise).
NORMALIZATION_SCHEMES = (*NNUNET_NORMALIZATION_SCHEMES, "NormalizeIntensity")
#: nnU-Net's smallest standard deviation or range it divides by (for float32 targets).
_EPS = 1e-8


def on_model_grid(contract: ModelContract) -> bool:
    """Whether ``contract`` asks for an imported framework's preprocessing (see the module docstring)."""
    return contract.channel_normalization is not None


def model_channels(image: np.ndarray, contract: ModelContract,
                   channels: Sequence[str] = BRATS_CHANNELS) -> np.ndarray:
    """The channels of a loaded ``(C, ...)`` image the model takes, in its order (the image itself when the order
    is the loaded one, as for bratsx's own models).

    Args:
        image: a loaded case's image.
        contract: the model's contract (``modality_order`` names its channels).
        channels: the name of each channel of ``image`` (:attr:`bratsx.imageio.LoadedCase.channels`).

    Raises:
        ValueError: ``image`` lacks a channel the model takes (discovery given the model's channels records that
            as the case's problem first).
    """
    missing = [c for c in contract.modality_order if c not in channels]
    if missing:
        raise ValueError(f"the image has channels {', '.join(channels)}, not the model's {', '.join(missing)}")
    order = [list(channels).index(c) for c in contract.modality_order]
    return image if order == list(range(len(image))) else image[order]


def normalize_channel(channel: np.ndarray, mask: np.ndarray, scheme: dict[str, Any]) -> None:
    """Normalise one float32 channel in place as nnU-Net's scheme of that name does.

    ``ZScoreNormalization`` with ``use_mask`` normalises only the voxels in ``mask`` (the others keep their
    value, zero after the non-zero crop); without it, the whole channel. ``CTNormalization`` clips to the
    plans' 0.5 and 99.5 percentiles and z-scores with the plans' mean and std. ``RescaleTo01Normalization``
    maps the channel's range to [0, 1]; ``NoNormalization`` leaves it. ``NormalizeIntensity`` is MONAI's
    channel-wise ``NormalizeIntensity``: with ``nonzero``, the mean and (population) standard deviation of the
    channel's own non-zero voxels z-score those voxels and zeros stay 0; without it, the whole channel; a standard
    deviation of 0 divides by 1.

    Raises:
        ValueError: a scheme not in :data:`NORMALIZATION_SCHEMES`.
    """
    name = scheme["scheme"]
    if name == "ZScoreNormalization":
        if scheme.get("use_mask", False):
            values = channel[mask]
            channel[mask] = (values - values.mean()) / max(float(values.std()), _EPS)
        else:
            mean, std = channel.mean(), channel.std()
            channel -= mean
            channel /= max(float(std), _EPS)
    elif name == "CTNormalization":
        intensity = scheme["intensity"]
        np.clip(channel, intensity["percentile_00_5"], intensity["percentile_99_5"], out=channel)
        channel -= intensity["mean"]
        channel /= max(float(intensity["std"]), _EPS)
    elif name == "NormalizeIntensity":
        selected = channel != 0 if scheme.get("nonzero", False) else np.ones(channel.shape, dtype=bool)
        if selected.any():
            values = channel[selected]
            std = float(values.std())
            channel[selected] = (values - values.mean()) / (std if std != 0.0 else 1.0)
    elif name == "RescaleTo01Normalization":
        channel -= channel.min()
        channel /= max(float(channel.max()), _EPS)
    elif name != "NoNormalization":
        raise ValueError(f"unknown normalisation scheme {name!r}; bratsx runs {', '.join(NORMALIZATION_SCHEMES)}")


def _network_axes(values: Sequence, contract: ModelContract) -> tuple:
    return tuple(values[axis] for axis in contract.transpose_forward)


def _orientation(source: str, target: str) -> np.ndarray:
    return ornt_transform(axcodes2ornt(tuple(source)), axcodes2ornt(tuple(target)))


def _reoriented(image: np.ndarray, source: str, target: str) -> np.ndarray:
    """A channel-first ``(C, *spatial)`` array from orientation ``source`` to ``target`` (nibabel axis codes)."""
    if source == target:
        return image
    moved = apply_orientation(np.moveaxis(image, 0, -1), _orientation(source, target))
    return np.ascontiguousarray(np.moveaxis(moved, -1, 0))


def _reordered(values: Sequence[float], source: str, target: str) -> tuple[float, ...]:
    """Per-axis values (spacing, sizes) of an array in orientation ``source``, along the axes of ``target``."""
    reordered = [0.0] * len(values)
    for axis, (new_axis, _) in enumerate(_orientation(source, target)):
        reordered[int(new_axis)] = float(values[axis])
    return tuple(reordered)


def prepare_on_model_grid(image: np.ndarray, spacing: Sequence[float], contract: ModelContract,
                          channels: Sequence[str] = BRATS_CHANNELS) -> Preprocessed:
    """Select the model's channels, then crop, reorient, transpose, normalise and resample a canonical
    ``(C, z, y, x)`` image as ``contract`` says.

    bratsx's own models get :func:`bratsx.preprocessing.preprocess` as always.

    Args:
        image: float32 canonical image (left untouched).
        spacing: its voxel spacing along the canonical axes.
        contract: the model's contract.
        channels: the name of each channel of ``image`` (see :func:`model_channels`).

    Returns:
        ``image`` on the network's grid and axes; ``box`` and ``full_shape`` are canonical (where the logits
        go back to), and ``mask`` covers every voxel, so every tile runs, as in nnU-Net.
    """
    image = model_channels(image, contract, channels)
    if not on_model_grid(contract):
        return preprocess(image, INFERENCE_MARGIN)
    mask = brain_mask(image)
    box = crop_box(mask, margin=0) if contract.crop_to_nonzero else CropBox((0, 0, 0), tuple(mask.shape))
    orientation, axes = contract.canonical_orientation, contract.transpose_forward
    cropped = _reoriented(image[(slice(None), *box.slices)].astype(np.float32), CANONICAL_ORIENTATION, orientation)
    cropped = np.ascontiguousarray(cropped.transpose(0, *(a + 1 for a in axes)))
    cropped_mask = _reoriented(mask[(None, *box.slices)], CANONICAL_ORIENTATION, orientation)[0]
    cropped_mask = np.ascontiguousarray(cropped_mask.transpose(axes))
    for channel, scheme in zip(cropped, contract.channel_normalization):
        normalize_channel(channel, cropped_mask, scheme)
    if contract.target_spacing is not None:
        current = _network_axes(_reordered(spacing, CANONICAL_ORIENTATION, orientation), contract)
        shape = shape_at_spacing(cropped.shape[1:], current, contract.target_spacing)
        cropped = resample_to_shape(cropped, shape, current, contract.target_spacing,
                                    Resampling.from_dict(contract.resampling["data"]))
    return Preprocessed(cropped, np.ones(cropped.shape[1:], dtype=bool), box, tuple(image.shape[1:]))


def logits_on_case_grid(logits: np.ndarray, ready: Preprocessed, spacing: Sequence[float],
                        contract: ModelContract) -> np.ndarray:
    """Blended float32 logits ``(C, *network grid)`` back to the canonical crop box (identity for bratsx models).

    Args:
        logits: from the sliding window over ``ready.image``.
        ready: what :func:`prepare_on_model_grid` returned.
        spacing: the case's canonical voxel spacing.
        contract: the model's contract.
    """
    if not on_model_grid(contract):
        return logits
    orientation = contract.canonical_orientation
    if contract.target_spacing is not None:
        shape = _network_axes(_reordered(ready.box.shape, CANONICAL_ORIENTATION, orientation), contract)
        current = _network_axes(_reordered(spacing, CANONICAL_ORIENTATION, orientation), contract)
        logits = resample_to_shape(logits, tuple(int(s) for s in shape), contract.target_spacing, current,
                                   Resampling.from_dict(contract.resampling["logits"]))
    backward = np.argsort(contract.transpose_forward)
    logits = logits.transpose(0, *(int(a) + 1 for a in backward))
    return np.ascontiguousarray(_reoriented(logits, orientation, CANONICAL_ORIENTATION))


def raw_segmentation(probabilities: np.ndarray, contract: ModelContract) -> np.ndarray:
    """The model's own label map (nnU-Net's ``convert_probabilities_to_segmentation``), uint16.

    Region models paint each region above 0.5 with its value in ``regions_class_order`` (later ones win);
    label models take the arg-max class, whose index is its label value.
    """
    if OutputMode(contract.output_mode) is OutputMode.LABELS:
        return probabilities.argmax(axis=0).astype(np.uint16)
    segmentation = np.zeros(probabilities.shape[1:], dtype=np.uint16)
    for channel, value in enumerate(contract.model_labels["regions_class_order"]):
        segmentation[probabilities[channel] > 0.5] = value
    return segmentation


def regions_from_model_output(probabilities: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Boolean WT/TC/ET ``(3, ...)`` from the output probabilities, through the model's label set when it has one."""
    if contract.model_labels is None:
        return regions_from_probabilities(probabilities, contract.output_mode)
    segmentation = raw_segmentation(probabilities, contract)
    return np.stack([np.isin(segmentation, values) for values in contract.model_labels["regions"]])


def model_labels_from_regions(regions: np.ndarray, contract: ModelContract) -> np.ndarray:
    """WT/TC/ET masks ``(3, ...)`` as a label map in the model's own values (``dataset.json``'s labels), uint8.

    Region ``r`` (WT, TC, ET in turn) is painted with the value that belongs to it and to the regions outside it
    only (Dataset137's 1, 2, 3; a label model's edema, necrotic core, enhancing tumour), inner regions winning as in
    :func:`bratsx.labels.labels_from_regions`: for nested masks this is :func:`raw_segmentation` of the same
    output, and post-processed masks are written the same way (``--labels model``).

    Raises:
        ValueError: the contract has no label set of its own (a bratsx model writes BraTS label sets).
    """
    if contract.model_labels is None:
        raise ValueError("this model has no labels of its own; it writes a BraTS label set")
    lists = [set(values) for values in contract.model_labels["regions"]]
    labels = np.zeros(np.shape(regions)[1:], dtype=np.uint8)
    for region, mask in enumerate(np.asarray(regions, dtype=bool)):
        outer = set.intersection(*lists[:region + 1]) - set().union(*lists[region + 1:])
        labels[mask] = min(outer)  # the importer accepts only label sets with one value per region (BraTS)
    return labels
