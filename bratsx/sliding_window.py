"""Sliding-window prediction over a volume larger than the network's patch, with Gaussian blending.

One implementation, used by validation during training, by ``bratsx infer`` and by the bench. The
planner places tiles evenly (per axis ``n = ceil((size - patch) / (patch * (1 - overlap))) + 1``
tiles, spread from the first voxel to the last), skips tiles that hold no brain, and the
accumulator blends overlapping predictions with a Gaussian importance map (sigma = patch / 8,
centred, clipped to a small positive minimum), summing in float32 and normalising by the summed
weights. Nothing here imports torch: the network is any function from a batch of tiles to a batch
of probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import lru_cache

import numpy as np

__all__ = ["TileAccumulator", "gaussian_importance_map", "plan_tiles", "sliding_window_predict", "tile_starts"]

#: Smallest weight of the importance map, relative to its peak (keeps tile borders from being ignored).
MIN_IMPORTANCE = 1e-3

Tile = tuple[slice, slice, slice]
Predictor = Callable[[np.ndarray], np.ndarray]


def tile_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start offsets of the tiles along one axis, evenly spread, first at 0 and last at ``size - patch``.

    Args:
        size: length of the (padded) axis; at least ``patch``.
        patch: tile length.
        overlap: fraction of a tile shared with its neighbour, in [0, 1).
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if size < patch:
        raise ValueError(f"axis of {size} voxels is smaller than the patch ({patch}); pad it first")
    if size == patch:
        return [0]
    count = math.ceil((size - patch) / (patch * (1.0 - overlap))) + 1
    return [round(i * (size - patch) / (count - 1)) for i in range(count)]


def plan_tiles(
    shape: tuple[int, int, int], patch: tuple[int, int, int], overlap: float, mask: np.ndarray | None = None
) -> list[Tile]:
    """Tiles covering ``shape`` (already padded to at least ``patch``), without the empty ones.

    Args:
        shape: spatial shape of the volume.
        patch: tile shape.
        overlap: fraction shared between neighbouring tiles, per axis.
        mask: optional boolean brain mask of ``shape``; tiles with no voxel of it are skipped.
    """
    starts = [tile_starts(s, p, overlap) for s, p in zip(shape, patch)]
    tiles = []
    for a in starts[0]:
        for b in starts[1]:
            for c in starts[2]:
                tile = (slice(a, a + patch[0]), slice(b, b + patch[1]), slice(c, c + patch[2]))
                if mask is None or mask[tile].any():
                    tiles.append(tile)
    return tiles


@lru_cache(maxsize=8)
def _cached_gaussian(patch: tuple[int, ...], sigma_scale: float) -> np.ndarray:
    axes = []
    for length in patch:
        centre = (length - 1) / 2.0
        sigma = length * sigma_scale
        axes.append(np.exp(-0.5 * ((np.arange(length) - centre) / sigma) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weights /= weights.max()
    weights = np.maximum(weights, MIN_IMPORTANCE).astype(np.float32)
    weights.flags.writeable = False
    return weights


def gaussian_importance_map(patch: tuple[int, int, int], sigma_scale: float = 0.125) -> np.ndarray:
    """Separable Gaussian weights over a tile, peak 1 at the exact centre, at least :data:`MIN_IMPORTANCE`.

    Cached per patch size; the returned array is read-only.
    """
    return _cached_gaussian(tuple(int(p) for p in patch), float(sigma_scale))


class TileAccumulator:
    """Gaussian-weighted sum of tile predictions over a volume, in float32.

    Args:
        channels: number of predicted channels.
        shape: spatial shape of the (padded) volume.
        patch: tile shape.
    """

    def __init__(self, channels: int, shape: tuple[int, int, int], patch: tuple[int, int, int]) -> None:
        self.values = np.zeros((channels, *shape), dtype=np.float32)
        self.weights = np.zeros(shape, dtype=np.float32)
        self.importance = gaussian_importance_map(patch)

    def add(self, prediction: np.ndarray, tile: Tile) -> None:
        """Add one tile's ``(channels, *patch)`` prediction."""
        self.values[(slice(None), *tile)] += prediction * self.importance
        self.weights[tile] += self.importance

    def finalize(self) -> np.ndarray:
        """The blended prediction; voxels no tile covered are 0."""
        covered = self.weights > 0
        np.divide(self.values, self.weights, out=self.values, where=covered)
        return self.values


def _padding(shape: tuple[int, ...], patch: tuple[int, ...]) -> list[tuple[int, int]]:
    """Symmetric padding that brings each axis up to the patch (none where it is already as large)."""
    pads = []
    for size, length in zip(shape, patch):
        missing = max(length - size, 0)
        pads.append((missing // 2, missing - missing // 2))
    return pads


def _batches(tiles: list[Tile], batch_size: int) -> Iterator[list[Tile]]:
    for start in range(0, len(tiles), batch_size):
        yield tiles[start : start + batch_size]


def sliding_window_predict(
    image: np.ndarray,
    patch: tuple[int, int, int],
    predict: Predictor,
    overlap: float = 0.5,
    batch_size: int = 1,
    mask: np.ndarray | None = None,
    on_tiles: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Predict a whole volume tile by tile and blend the tiles with Gaussian weights.

    Args:
        image: float32 ``(C, *spatial)`` network input (already normalised).
        patch: tile shape the network takes.
        predict: maps a float32 ``(N, C, *patch)`` batch to float32 ``(N, K, *patch)`` probabilities.
        overlap: fraction of a tile shared with each neighbour (0.5 by default, as nnU-Net).
        batch_size: tiles per call of ``predict``.
        mask: optional brain mask of the spatial shape; tiles without brain are not predicted and
            stay 0 in the output.
        on_tiles: called with ``(tiles done, tiles in all)`` after each call of ``predict``.

    Returns:
        float32 ``(K, *spatial)`` blended probabilities.

    Raises:
        ValueError: if ``mask`` is given and empty.
    """
    spatial = tuple(image.shape[1:])
    pads = _padding(spatial, patch)
    padded = np.pad(image, [(0, 0), *pads]) if any(sum(p) for p in pads) else image
    padded_mask = np.pad(mask, pads) if mask is not None and any(sum(p) for p in pads) else mask
    tiles = plan_tiles(tuple(padded.shape[1:]), patch, overlap, padded_mask)
    if not tiles:
        raise ValueError("the mask is empty: there is no tile to predict")
    crop = tuple(slice(before, before + size) for (before, _), size in zip(pads, spatial))
    if tuple(padded.shape[1:]) == tuple(patch):  # one window, nothing to blend: its prediction, exactly
        prediction = np.asarray(predict(padded[None]), dtype=np.float32)[0]
        if on_tiles is not None:
            on_tiles(1, 1)
        return np.ascontiguousarray(prediction[(slice(None), *crop)])
    accumulator, done = None, 0
    for group in _batches(tiles, max(1, batch_size)):
        batch = np.stack([padded[(slice(None), *tile)] for tile in group])
        predictions = np.asarray(predict(batch), dtype=np.float32)
        if accumulator is None:
            accumulator = TileAccumulator(predictions.shape[1], tuple(padded.shape[1:]), patch)
        for prediction, tile in zip(predictions, group):
            accumulator.add(prediction, tile)
        done += len(group)
        if on_tiles is not None:
            on_tiles(done, len(tiles))
    blended = accumulator.finalize()
    return np.ascontiguousarray(blended[(slice(None), *crop)])
