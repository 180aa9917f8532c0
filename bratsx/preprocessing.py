"""Preprocessing shared by training and inference: brain mask, crop to the brain, z-score.

BraTS volumes are skull-stripped, so the brain is simply where any modality is non-zero; cropping
to its bounding box removes about two thirds of every 240x240x155 volume before the network runs.
The crop box is kept so predictions paste back into the full volume. Normalisation is a z-score
per modality computed inside the brain, which absorbs scanner intensity scales (some BraTS cases sit
ten times higher than others).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .boxes import bounding_box, whole

__all__ = [
    "DEFAULT_MARGIN",
    "INFERENCE_MARGIN",
    "CropBox",
    "Preprocessed",
    "brain_mask",
    "crop_box",
    "paste",
    "preprocess",
    "zscore_in_mask",
]

#: Voxels added around the brain's bounding box on every side (clipped to the volume) by the training cache.
#: Training keeps it: a patch reaching past the box sees zeros either way (the margin's zeros or the zero
#: padding), so the margin changes nothing the network learns, and changing it would rebuild every cache.
DEFAULT_MARGIN = 2
#: Margin of the inference crop: none, as nnU-Net crops to the non-zero box. Around the box the network sees
#: zeros either way, so a margin would only plan more tiles (12 instead of 8 128^3 tiles on BraTS-GLI-00001-000).
INFERENCE_MARGIN = 0


@dataclass(frozen=True)
class CropBox:
    """A box inside a volume: ``start`` inclusive, ``stop`` exclusive, per axis."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """The box as slices, for indexing the spatial axes."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Size of the box."""
        return tuple(b - a for a, b in zip(self.start, self.stop))


@dataclass
class Preprocessed:
    """A case ready for the network.

    Attributes:
        image: float32 ``(4, *box.shape)``, z-scored inside the brain, zero outside it.
        mask: boolean brain mask ``box.shape``.
        box: where the crop sits in the full canonical volume.
        full_shape: spatial shape of the full canonical volume.
    """

    image: np.ndarray
    mask: np.ndarray
    box: CropBox
    full_shape: tuple[int, int, int]


def brain_mask(image: np.ndarray) -> np.ndarray:
    """Union of the non-zero voxels of all modalities, with enclosed holes filled.

    Args:
        image: ``(C, *spatial)`` array.

    Returns:
        Boolean mask of the spatial shape. Holes are filled inside the mask's bounding box only, which
        gives the same result as filling the whole volume at a fraction of the cost.
    """
    mask = np.any(image != 0, axis=0)
    if not mask.any():
        return mask
    box = crop_box(mask, margin=1)
    mask[box.slices] = ndimage.binary_fill_holes(mask[box.slices])
    return mask


def crop_box(mask: np.ndarray, margin: int = DEFAULT_MARGIN) -> CropBox:
    """Bounding box of a mask plus ``margin`` voxels per side, clipped to the volume.

    An empty mask gives the whole volume.
    """
    box = bounding_box(mask, margin) or whole(mask.shape)
    return CropBox(tuple(s.start for s in box), tuple(s.stop for s in box))


def zscore_in_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normalise each channel to zero mean and unit variance inside ``mask``, in place.

    Voxels outside the mask are set to 0 (the normalised mean). A channel that is constant inside
    the mask is only centred. Statistics are accumulated in float64 for accuracy; the image stays
    float32.

    Returns:
        ``image``, normalised.
    """
    if not mask.any():
        image[...] = 0.0
        return image
    outside = ~mask
    for channel in image:
        values = channel[mask]
        mean = float(values.mean(dtype=np.float64))
        std = float(values.std(dtype=np.float64))
        channel -= np.float32(mean)
        if std > 0:
            channel *= np.float32(1.0 / std)
        channel[outside] = 0.0
    return image


def preprocess(image: np.ndarray, margin: int = DEFAULT_MARGIN) -> Preprocessed:
    """Mask, crop and normalise a canonical ``(4, z, y, x)`` image (the input is left untouched).

    Args:
        image: float32 image from :func:`bratsx.imageio.load_case`.
        margin: voxels kept around the brain's bounding box.

    Returns:
        The cropped, z-scored image with its mask and crop box.
    """
    mask = brain_mask(image)
    box = crop_box(mask, margin)
    cropped = image[(slice(None), *box.slices)].copy()  # a copy even when the box is everything
    cropped_mask = np.ascontiguousarray(mask[box.slices])
    return Preprocessed(zscore_in_mask(cropped, cropped_mask), cropped_mask, box, tuple(image.shape[1:]))


def paste(cropped: np.ndarray, box: CropBox, full_shape: tuple[int, ...], fill: float = 0) -> np.ndarray:
    """Put a cropped array (spatial axes last) back into a full-size array filled with ``fill``."""
    leading = cropped.shape[: cropped.ndim - 3]
    full = np.full((*leading, *full_shape), fill, dtype=cropped.dtype)
    full[(..., *box.slices)] = cropped
    return full
