"""Validation during training: full-volume sliding-window prediction and Dice per region.

Uses the same tiling and blending as ``bratsx infer`` (:func:`~bratsx.runtime.segment.tiled_logits`: tile
grid, empty-tile skipping, Gaussian blending of logits), on the cached, preprocessed cases, so a validation
Dice is what inference would score on them (up to the tile grid: the cache's crop keeps a 2-voxel margin that
inference's does not).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..labels import REGION_ORDER, OutputMode, regions_from_labels, regions_from_probabilities
from ..metrics import region_dice
from ..network.unet import predict_tiles
from ..runtime.backends import BackendBase
from ..runtime.segment import probabilities_from_logits, tiled_logits
from .cache import CACHE_CONVENTION, CachedCase

__all__ = ["validate"]


class _NetworkInTraining(BackendBase):
    """The network being trained, run on tiles as inference runs a backend."""

    def __init__(self, model: nn.Module, output_mode: OutputMode, device: torch.device,
                 autocast_dtype: torch.dtype | None) -> None:
        self.model, self.output_mode, self.autocast_dtype = model, output_mode, autocast_dtype
        self.torch_device = device

    def run(self, tiles: np.ndarray) -> np.ndarray:
        return predict_tiles(self.model, tiles, self.output_mode, self.torch_device, self.autocast_dtype)


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

    network = _NetworkInTraining(model, output_mode, device, autocast_dtype)
    was_training = model.training
    model.eval()
    scores: dict[str, list[float]] = {region.value: [] for region in REGION_ORDER}
    try:
        for case in cases:
            logits = tiled_logits(np.asarray(case.image()), patch, [network], output_mode, overlap=overlap,
                                  batch_size=batch_size, mask=np.asarray(case.mask()))
            probs = probabilities_from_logits(logits, output_mode)
            reference = regions_from_labels(np.asarray(case.labels()), CACHE_CONVENTION)
            for region, value in region_dice(regions_from_probabilities(probs, output_mode), reference).items():
                scores[region.value].append(value)
    finally:
        model.train(was_training)
    result = {region: float(np.mean(values)) for region, values in scores.items()}
    result["mean"] = float(np.mean(list(result.values())))
    return result
