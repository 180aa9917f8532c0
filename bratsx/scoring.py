"""Scoring two label maps on the regions of a label set: the one path for ``bratsx infer`` and ``evaluate``.

A label set's challenge scores its own regions (BraTS 2024 post-treatment glioma: WT, TC, ET, NETC,
SNFH and the resection cavity RC, scored apart from the tumour), each with its lesion-wise
parameters. When prediction and reference are in different sets, only WT, TC and ET, which every
set defines, can be compared; the reference's set gives their parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .labels import REGION_ORDER, LabelConvention, evaluated_region_masks, regions_from_labels
from .lesionwise import lesion_wise_metrics
from .metrics import case_metrics

__all__ = ["score_label_maps"]


def score_label_maps(
    prediction: np.ndarray,
    predicted_in: LabelConvention,
    reference: np.ndarray,
    reference_in: LabelConvention,
    spacing: Sequence[float],
    *,
    lesion_wise: bool,
) -> dict[str, float]:
    """Every metric per region of the reference's label set, keyed ``"<metric>_<region>"``.

    Args:
        prediction: predicted label map, values in ``predicted_in``.
        predicted_in: its label set.
        reference: reference label map, same shape, values in ``reference_in``.
        reference_in: its label set, whose regions and lesion-wise parameters are scored.
        spacing: voxel size in mm along the arrays' axes.
        lesion_wise: also the lesion-wise Dice, HD95 and lesion counts per region.

    Returns:
        :func:`~bratsx.metrics.case_metrics` (and :func:`~bratsx.lesionwise.lesion_wise_metrics`) per region.
    """
    row = reference_in.label_set
    if predicted_in is reference_in:
        regions = row.regions
        predicted, truth = evaluated_region_masks(prediction, predicted_in), evaluated_region_masks(reference, row.name)
    else:
        regions = tuple(row.region(region.value) for region in REGION_ORDER)
        predicted, truth = regions_from_labels(prediction, predicted_in), regions_from_labels(reference, reference_in)
    metrics = case_metrics(predicted, truth, spacing, [region.name for region in regions])
    if lesion_wise:
        metrics.update(lesion_wise_metrics(predicted, truth, spacing, regions))
    return metrics
