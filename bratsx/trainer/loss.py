"""Losses: soft Dice + BCE on the WT/TC/ET regions (Dice + CE in ``labels`` mode), with deep supervision.

As in nnU-Net, the Dice term is computed over the whole batch at once ("batch Dice"), which keeps
it stable when a patch holds little or no enhancing tumour; the coarser deep-supervision outputs
are compared with labels subsampled to their resolution (nearest neighbour), weighted 1, 1/2, 1/4
and normalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..labels import REGION_ORDER, REGION_TISSUES, OutputMode
from .cache import CACHE_CONVENTION

__all__ = ["DeepSupervisionLoss", "SegmentationLoss", "region_targets"]

_SMOOTH = 1e-5


def region_targets(labels: torch.Tensor) -> torch.Tensor:
    """Float ``(N, 3, ...)`` WT/TC/ET targets from ``(N, ...)`` tissue labels (cache convention)."""
    values = CACHE_CONVENTION.tissue_values
    channels = []
    for region in REGION_ORDER:
        member = torch.zeros_like(labels, dtype=torch.bool)
        for tissue in REGION_TISSUES[region]:
            member |= labels == values[tissue]
        channels.append(member)
    return torch.stack(channels, dim=1).float()


def _soft_dice_loss(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - mean over channels of the batch soft Dice; inputs ``(N, C, ...)``, float32."""
    axes = [0, *range(2, probabilities.ndim)]
    intersection = (probabilities * targets).sum(axes)
    total = probabilities.sum(axes) + targets.sum(axes)
    return 1.0 - ((2.0 * intersection + _SMOOTH) / (total + _SMOOTH).clamp_min(1e-8)).mean()


class SegmentationLoss(nn.Module):
    """Dice + BCE over region channels, or Dice (tumour classes) + CE over label classes.

    Args:
        output_mode: what the logits are.

    ``forward(logits, labels)`` takes ``(N, C, ...)`` logits and ``(N, ...)`` uint8 tissue labels.
    """

    def __init__(self, output_mode: OutputMode = OutputMode.REGIONS) -> None:
        super().__init__()
        self.output_mode = OutputMode(output_mode)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.output_mode is OutputMode.REGIONS:
            targets = region_targets(labels)
            bce = F.binary_cross_entropy_with_logits(logits, targets)
            return bce + _soft_dice_loss(torch.sigmoid(logits), targets)
        classes = labels.long()
        ce = F.cross_entropy(logits, classes)
        one_hot = F.one_hot(classes, logits.shape[1]).movedim(-1, 1).float()
        return ce + _soft_dice_loss(torch.softmax(logits, dim=1)[:, 1:], one_hot[:, 1:])


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of a loss over the outputs of every resolution, finest first.

    Args:
        loss: per-resolution loss.
        heads: number of outputs; weights are 1, 1/2, 1/4, ... normalised to sum 1.
    """

    def __init__(self, loss: nn.Module, heads: int) -> None:
        super().__init__()
        self.loss = loss
        weights = torch.tensor([0.5**i for i in range(heads)])
        self.weights = (weights / weights.sum()).tolist()

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, labels)
        total = 0.0
        for weight, output in zip(self.weights, outputs):
            step = [full // part for full, part in zip(labels.shape[1:], output.shape[2:])]
            coarse = labels[(slice(None), *(slice(None, None, s) for s in step))]
            total = total + weight * self.loss(output, coarse)
        return total
