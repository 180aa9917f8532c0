"""Segmentation metrics, one implementation for validation, ``bratsx evaluate`` and the bench.

Follows the BraTS rules for empty masks: when both prediction and reference are empty the Dice is 1
(nothing to find, nothing found).
"""

from __future__ import annotations

import numpy as np

from .labels import REGION_ORDER, Region

__all__ = ["dice", "region_dice"]


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice overlap of two boolean masks; 1.0 when both are empty (BraTS convention)."""
    prediction = np.asarray(prediction, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    total = int(np.count_nonzero(prediction)) + int(np.count_nonzero(reference))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(prediction & reference)) / total


def region_dice(prediction: np.ndarray, reference: np.ndarray) -> dict[Region, float]:
    """Dice per region for ``(3, ...)`` boolean region masks in :data:`~bratsx.labels.REGION_ORDER`."""
    return {region: dice(prediction[i], reference[i]) for i, region in enumerate(REGION_ORDER)}
