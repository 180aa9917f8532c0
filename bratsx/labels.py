"""Modalities, label conventions and the three nested tumour regions.

BraTS has used three label conventions over the years, and MSD a fourth order of its own. Every
stage works internally with the three nested regions the challenge scores:

* WT, whole tumour: every tumour label (core + edema)
* TC, tumour core: necrotic/non-enhancing core + enhancing tumour
* ET, enhancing tumour

This module holds the one implementation of each conversion between a convention and the regions,
used by training, inference, evaluation and the synthetic generator alike.
"""

from __future__ import annotations

from enum import Enum, IntEnum

import numpy as np

__all__ = [
    "MODALITY_ORDER",
    "CLASS_CONVENTION",
    "REGION_ORDER",
    "LabelConvention",
    "Modality",
    "OutputMode",
    "Region",
    "Tissue",
    "convert_labels",
    "detect_convention",
    "labels_from_regions",
    "present_values",
    "regions_from_labels",
    "regions_from_probabilities",
    "unexpected_values",
]


class Modality(str, Enum):
    """The four MRI sequences, named as in the BraTS 2018-2021 files."""

    FLAIR = "flair"
    T1 = "t1"
    T1CE = "t1ce"
    T2 = "t2"


#: Channel order of every image array inside bratsx (and of every model's input).
MODALITY_ORDER: tuple[Modality, ...] = (Modality.FLAIR, Modality.T1, Modality.T1CE, Modality.T2)


class Tissue(IntEnum):
    """Tumour sub-regions as annotated by the raters (background is 0 everywhere)."""

    NECROTIC_CORE = 1  # NCR/NET (2018-2021), NETC (2023+), "non-enhancing tumour" (MSD)
    EDEMA = 2  # ED (2018-2021), SNFH (2023+), "edema" (MSD)
    ENHANCING = 3  # ET everywhere


class Region(str, Enum):
    """The three nested evaluation regions, in the order of the model's output channels."""

    WT = "WT"
    TC = "TC"
    ET = "ET"


#: Channel order of region probabilities and region masks.
REGION_ORDER: tuple[Region, ...] = (Region.WT, Region.TC, Region.ET)

class OutputMode(str, Enum):
    """What a network's output channels are.

    * ``regions``: 3 independent sigmoid channels WT, TC, ET (the default, as in nnU-Net's BraTS setup)
    * ``labels``: 4-class softmax over background, necrotic core, edema, enhancing tumour
    """

    REGIONS = "regions"
    LABELS = "labels"

    @property
    def channels(self) -> int:
        """Number of output channels."""
        return len(REGION_ORDER) if self is OutputMode.REGIONS else 1 + len(Tissue)


#: Which tissues make up each region.
REGION_TISSUES: dict[Region, tuple[Tissue, ...]] = {
    Region.WT: (Tissue.NECROTIC_CORE, Tissue.EDEMA, Tissue.ENHANCING),
    Region.TC: (Tissue.NECROTIC_CORE, Tissue.ENHANCING),
    Region.ET: (Tissue.ENHANCING,),
}


class LabelConvention(str, Enum):
    """How a label file encodes the tissues.

    * ``brats2020``: BraTS 2018-2021, 1 = NCR/NET, 2 = edema, 4 = ET
    * ``brats2023``: BraTS 2023+, 1 = NETC, 2 = SNFH (edema), 3 = ET
    * ``msd``: MSD Task01_BrainTumour, 1 = edema, 2 = non-enhancing tumour, 3 = enhancing tumour
    """

    BRATS2020 = "brats2020"
    BRATS2023 = "brats2023"
    MSD = "msd"

    @property
    def tissue_values(self) -> dict[Tissue, int]:
        """The label value of each tissue in this convention."""
        return _TISSUE_VALUES[self]

    @property
    def allowed_values(self) -> frozenset[int]:
        """Every value a label map in this convention may hold, background included."""
        return frozenset({0, *self.tissue_values.values()})


_TISSUE_VALUES: dict[LabelConvention, dict[Tissue, int]] = {
    LabelConvention.BRATS2020: {Tissue.NECROTIC_CORE: 1, Tissue.EDEMA: 2, Tissue.ENHANCING: 4},
    LabelConvention.BRATS2023: {Tissue.NECROTIC_CORE: 1, Tissue.EDEMA: 2, Tissue.ENHANCING: 3},
    LabelConvention.MSD: {Tissue.NECROTIC_CORE: 2, Tissue.EDEMA: 1, Tissue.ENHANCING: 3},
}

_LUT_SIZE = 256


def _lookup_table(mapping: dict[int, int | bool], dtype: type) -> np.ndarray:
    table = np.zeros(_LUT_SIZE, dtype=dtype)
    for source, target in mapping.items():
        table[source] = target
    return table


def _as_lut_index(labels: np.ndarray) -> np.ndarray:
    """Labels as an unsigned array that can index a 256-entry lookup table (no copy for uint8)."""
    if labels.dtype == np.uint8:
        return labels
    return labels.astype(np.uint8)


def present_values(labels: np.ndarray) -> list[float]:
    """The distinct values in a label map, sorted; fast for small non-negative integers."""
    if labels.size == 0:
        return []
    if np.issubdtype(labels.dtype, np.integer):
        low, high = int(labels.min()), int(labels.max())
        if low >= 0 and high < 65536:
            counts = np.bincount(labels.ravel(), minlength=high + 1)
            return [int(v) for v in np.flatnonzero(counts)]
    return [float(v) if not float(v).is_integer() else int(v) for v in np.unique(labels)]


def unexpected_values(labels: np.ndarray, convention: LabelConvention) -> list[float]:
    """Values in ``labels`` that ``convention`` does not define (empty when the map is valid)."""
    return [v for v in present_values(labels) if v not in convention.allowed_values]


def detect_convention(labels: np.ndarray) -> LabelConvention | None:
    """Guess between the two BraTS conventions from the values present.

    Only the value of ET differs between BraTS 2018-2021 (4) and 2023+ (3), so the values decide
    unambiguously when ET is present; without ET both read the same, and BraTS 2018-2021 is
    returned. MSD's swapped 1/2 cannot be told apart from values and is never guessed.

    Returns:
        The convention, or ``None`` when the map holds both 3 and 4 or values outside 0-4.
    """
    values = set(present_values(labels))
    if values <= LabelConvention.BRATS2020.allowed_values:
        return LabelConvention.BRATS2020
    if values <= LabelConvention.BRATS2023.allowed_values:
        return LabelConvention.BRATS2023
    return None


def regions_from_labels(labels: np.ndarray, convention: LabelConvention) -> np.ndarray:
    """Nested region masks from a label map.

    Args:
        labels: integer label map of any shape, values in ``convention`` (see
            :func:`unexpected_values` to check first).
        convention: how ``labels`` encodes the tissues.

    Returns:
        Boolean array of shape ``(3, *labels.shape)``, channels in :data:`REGION_ORDER` (WT, TC, ET).
    """
    index = _as_lut_index(labels)
    regions = np.empty((len(REGION_ORDER), *labels.shape), dtype=bool)
    values = convention.tissue_values
    for channel, region in enumerate(REGION_ORDER):
        table = _lookup_table({values[t]: True for t in REGION_TISSUES[region]}, bool)
        np.take(table, index, out=regions[channel])
    return regions


def labels_from_regions(regions: np.ndarray, convention: LabelConvention) -> np.ndarray:
    """A label map from region masks, the inner region winning where they disagree.

    Predicted regions need not be perfectly nested; as in BraTS practice, ET takes precedence over
    TC and TC over WT: a voxel is ET if ET is set, else core if TC is set, else edema if WT is set.

    Args:
        regions: boolean (or 0/1) array of shape ``(3, ...)`` in :data:`REGION_ORDER`.
        convention: the convention of the returned labels.

    Returns:
        ``uint8`` label map of shape ``regions.shape[1:]``.
    """
    if regions.shape[0] != len(REGION_ORDER):
        raise ValueError(f"expected {len(REGION_ORDER)} region channels (WT, TC, ET), got {regions.shape[0]}")
    values = convention.tissue_values
    wt, tc, et = (np.asarray(r, dtype=bool) for r in regions)
    labels = np.zeros(regions.shape[1:], dtype=np.uint8)
    labels[wt] = values[Tissue.EDEMA]
    labels[tc] = values[Tissue.NECROTIC_CORE]
    labels[et] = values[Tissue.ENHANCING]
    return labels


def convert_labels(labels: np.ndarray, source: LabelConvention, target: LabelConvention) -> np.ndarray:
    """Re-encode a label map from one convention to another (``uint8`` result)."""
    source_values, target_values = source.tissue_values, target.tissue_values
    table = _lookup_table({source_values[t]: target_values[t] for t in Tissue}, np.uint8)
    return np.take(table, _as_lut_index(labels))


#: Class indices of ``labels``-mode networks (and of the training cache): class i is label value i
#: of the BraTS 2023 convention (0 background, 1 necrotic core, 2 edema, 3 enhancing).
CLASS_CONVENTION = LabelConvention.BRATS2023


def regions_from_probabilities(probabilities: np.ndarray, output_mode: OutputMode) -> np.ndarray:
    """Boolean WT/TC/ET masks from network probabilities ``(C, ...)``.

    ``regions`` outputs are thresholded at 0.5 per channel; ``labels`` outputs take the arg-max
    class (in :data:`CLASS_CONVENTION`) and convert it to regions.
    """
    if OutputMode(output_mode) is OutputMode.REGIONS:
        return probabilities > 0.5
    return regions_from_labels(probabilities.argmax(axis=0).astype(np.uint8), CLASS_CONVENTION)
