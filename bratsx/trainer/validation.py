"""Validation during training: full-volume sliding-window prediction and Dice per region.

Uses the same sliding window (tile grid, Gaussian blending, empty-tile skipping) as ``bratsx infer``,
on the cached, preprocessed cases, so a validation Dice is what inference would score on them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..labels import REGION_ORDER, OutputMode, regions_from_labels, regions_from_probabilities
from ..metrics import region_dice
from ..sliding_window import sliding_window_predict
from .cache import CACHE_CONVENTION, CachedCase
from .network import predict_tiles

__all__ = ["validate"]


def validate(
    model: nn.Module,
    cases: Sequence[CachedCase],
    patch: tuple[int, int, int],
    output_mode: OutputMode,
    device: torch.device,
    overlap: float = 0.5,
    batch_size: int = 2,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Mean Dice per region (``WT``, ``TC``, ``ET``) over ``cases``, and ``mean`` of the three."""

    def predict(tiles: np.ndarray) -> np.ndarray:
        return predict_tiles(model, tiles, output_mode, device, autocast_dtype)

    was_training = model.training
    model.eval()
    scores: dict[str, list[float]] = {region.value: [] for region in REGION_ORDER}
    try:
        for case in cases:
            probs = sliding_window_predict(
                np.asarray(case.image()), patch, predict, overlap, batch_size, np.asarray(case.mask())
            )
            reference = regions_from_labels(np.asarray(case.labels()), CACHE_CONVENTION)
            for region, value in region_dice(regions_from_probabilities(probs, output_mode), reference).items():
                scores[region.value].append(value)
    finally:
        model.train(was_training)
    result = {region: float(np.mean(values)) for region, values in scores.items()}
    result["mean"] = float(np.mean(list(result.values())))
    return result
