"""Segmentation metrics, one implementation for validation, ``bratsx infer``/``evaluate`` and the bench.

Follows the BraTS rules for empty masks: when prediction and reference are both empty the Dice is 1
and the HD95 is 0 (nothing to find, nothing found); when exactly one is empty the Dice is 0 and the
HD95 is :data:`EMPTY_HD95`, the diagonal of the 240x240x155 mm BraTS volume.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from .boxes import bounding_box
from .labels import REGION_ORDER, Region

__all__ = ["EMPTY_HD95", "case_metrics", "dice", "hd95", "region_dice", "region_volumes_ml", "scored_regions",
           "sensitivity", "specificity", "volume_ml"]

#: HD95 (mm) scored by BraTS when exactly one of prediction and reference is empty.
EMPTY_HD95 = 373.13


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


def sensitivity(prediction: np.ndarray, reference: np.ndarray) -> float:
    """True-positive rate; 1.0 when the reference is empty (nothing was missed)."""
    positives = int(np.count_nonzero(reference))
    if positives == 0:
        return 1.0
    return int(np.count_nonzero(prediction & reference)) / positives


def specificity(prediction: np.ndarray, reference: np.ndarray) -> float:
    """True-negative rate over the whole volume; 1.0 when there is no negative voxel."""
    negatives = int(reference.size - np.count_nonzero(reference))
    if negatives == 0:
        return 1.0
    return int(np.count_nonzero(~prediction & ~reference)) / negatives


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a mask in millilitres (spacing in mm)."""
    return int(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0


def region_volumes_ml(regions: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """WT, TC and ET volumes in millilitres of boolean ``(3, z, y, x)`` region masks (spacing in mm): the one
    definition behind records, the web app and the report."""
    return {region.value: volume_ml(regions[i], spacing) for i, region in enumerate(REGION_ORDER)}


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0)


def hd95(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float]) -> float:
    """95% Hausdorff distance in mm (BraTS rules for empty masks).

    The larger of the two directed 95th percentiles: the distances from each surface voxel of the
    prediction to the nearest surface voxel of the reference, and the other way round, as the BraTS
    evaluations compute it (``medpy.metric.binary.hd95``; the 2023 lesion-wise scorer takes the same
    maximum). Euclidean distance transforms honour the voxel spacing; the work is confined to the
    bounding box of both masks (plus a margin), so a small tumour in a full volume costs little.
    """
    prediction, reference = np.asarray(prediction, bool), np.asarray(reference, bool)
    has_prediction, has_reference = prediction.any(), reference.any()
    if not has_prediction and not has_reference:
        return 0.0
    if not has_prediction or not has_reference:
        return EMPTY_HD95
    box = bounding_box(prediction | reference, 1)
    prediction_surface, reference_surface = _surface(prediction[box]), _surface(reference[box])
    to_reference = ndimage.distance_transform_edt(~reference_surface, sampling=spacing)
    to_prediction = ndimage.distance_transform_edt(~prediction_surface, sampling=spacing)
    return float(max(np.percentile(to_reference[prediction_surface], 95),
                     np.percentile(to_prediction[reference_surface], 95)))


def case_metrics(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float],
                 names: Sequence[str] = tuple(r.value for r in REGION_ORDER)) -> dict[str, float]:
    """Every metric per region for ``(R, ...)`` boolean region masks, keyed ``"<metric>_<region>"``.

    Metrics: ``dice``, ``sensitivity``, ``specificity``, ``hd95`` (mm), ``volume_pred_ml`` and
    ``volume_ref_ml``. ``names`` names the channels (default WT, TC, ET; a label set's evaluated
    regions for :func:`bratsx.labels.evaluated_region_masks`).
    """
    result: dict[str, float] = {}
    for channel, name in enumerate(names):
        p, r = np.asarray(prediction[channel], bool), np.asarray(reference[channel], bool)
        result[f"dice_{name}"] = dice(p, r)
        result[f"sensitivity_{name}"] = sensitivity(p, r)
        result[f"specificity_{name}"] = specificity(p, r)
        result[f"hd95_{name}"] = hd95(p, r, spacing)
        result[f"volume_pred_ml_{name}"] = volume_ml(p, spacing)
        result[f"volume_ref_ml_{name}"] = volume_ml(r, spacing)
    return result


def scored_regions(metrics: Iterable[Mapping[str, float] | None]) -> list[str]:
    """The regions of a table of cases' metrics: WT, TC and ET, then the other regions some case scores
    (``dice_<region>`` keys) as they first appear: a label set's own, NETC, SNFH and RC for BraTS 2024."""
    found = dict.fromkeys(r.value for r in REGION_ORDER)
    for case in metrics:
        found.update(dict.fromkeys(key.removeprefix("dice_") for key in case or {} if key.startswith("dice_")))
    return list(found)
