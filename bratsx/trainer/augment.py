"""Data augmentation on torch tensors, on the training device, seeded per training step.

Runs after the batch reaches the device, so the data-loader workers only slice memory maps. Every
random draw comes from a generator seeded with ``(seed, step)``: a resumed run augments exactly as
an uninterrupted one would. Probabilities and ranges follow nnU-Net's defaults.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import AugmentConfig

__all__ = ["augment_batch"]


def _generator(seed: int, step: int) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    generator.manual_seed((seed * 1_000_003 + step) % (2**63))
    return generator


def _uniform(generator: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _gamma(channel: torch.Tensor, gamma: float) -> torch.Tensor:
    """Gamma curve on the channel's intensity range, keeping its mean and std (as nnU-Net)."""
    low, high = channel.min(), channel.max()
    span = (high - low).clamp_min(1e-7)
    mean, std = channel.mean(), channel.std()
    curved = ((channel - low) / span) ** gamma * span + low
    return (curved - curved.mean()) / curved.std().clamp_min(1e-7) * std + mean


def _rotation_zoom(generator: torch.Generator) -> torch.Tensor:
    """A random 3x4 affine (rotation about each axis, isotropic zoom) for ``affine_grid``."""
    angles = _uniform(generator, (3,), -math.pi / 12, math.pi / 12)
    zoom = float(_uniform(generator, (1,), 0.85, 1.25))
    matrix = torch.eye(3)
    for axis, angle in enumerate(angles.tolist()):
        i, j = [a for a in range(3) if a != axis]
        rotation = torch.eye(3)
        rotation[i, i] = rotation[j, j] = math.cos(angle)
        rotation[i, j], rotation[j, i] = -math.sin(angle), math.sin(angle)
        matrix = rotation @ matrix
    return torch.cat([matrix / zoom, torch.zeros(3, 1)], dim=1)


def augment_batch(
    images: torch.Tensor, labels: torch.Tensor, config: AugmentConfig, seed: int, step: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch in place where possible.

    Args:
        images: float ``(N, C, D, H, W)`` on the training device.
        labels: uint8 ``(N, D, H, W)`` tissue labels on the same device.
        config: probabilities.
        seed: run seed.
        step: global micro-batch index, so every step draws its own, reproducible randomness.

    Returns:
        The augmented images and labels (labels only move spatially: flips, rotation).
    """
    generator = _generator(seed, step)  # on the CPU: the same numbers whatever the device
    batch, channels = images.shape[:2]
    if config.spatial > 0:
        for n in range(batch):
            if float(torch.rand(1, generator=generator)) < config.spatial:
                theta = _rotation_zoom(generator).to(images.device)[None]
                grid = F.affine_grid(theta, [1, channels, *images.shape[2:]], align_corners=False)
                images[n] = F.grid_sample(images[n : n + 1], grid, mode="bilinear", align_corners=False)[0]
                moved = F.grid_sample(labels[n : n + 1, None].float(), grid, mode="nearest", align_corners=False)
                labels[n] = moved[0, 0].to(labels.dtype)
    for axis in range(3):
        flips = (torch.rand(batch, generator=generator) < config.flip).tolist()
        for n, flip in enumerate(flips):
            if flip:
                images[n] = images[n].flip(axis + 1)
                labels[n] = labels[n].flip(axis)
    for n in range(batch):
        for c in range(channels):
            draws = torch.rand(4, generator=generator).tolist()
            if draws[0] < config.scale_intensity:
                images[n, c] *= float(_uniform(generator, (1,), 0.75, 1.25))
            if draws[1] < config.shift_intensity:
                images[n, c] += float(torch.randn(1, generator=generator) * 0.1)
            if draws[2] < config.gamma:
                images[n, c] = _gamma(images[n, c], float(_uniform(generator, (1,), 0.7, 1.5)))
            if draws[3] < config.noise:
                sigma = float(_uniform(generator, (1,), 0.0, 0.1))
                noise = torch.randn(images.shape[2:], generator=generator) * sigma
                images[n, c] += noise.to(images.device)
    return images, labels
