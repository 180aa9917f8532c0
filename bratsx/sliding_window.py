"""Sliding-window prediction over a volume larger than the network's patch, with Gaussian blending, and its
single-pass alternative.

One implementation, used by validation during training, by ``bratsx infer`` and by the bench. The
planner places tiles evenly (per axis ``n = ceil((size - patch) / (patch * (1 - overlap))) + 1``
tiles, spread from the first voxel to the last), skips tiles that hold no brain, and the
accumulator blends overlapping predictions with nnU-Net's Gaussian importance map (sigma = patch / 8,
peak at voxel ``patch // 2``, zeros raised to the smallest non-zero weight), summing in float32 and
normalising by the summed weights. Nothing here imports torch: the network is any function from a
batch of tiles to a batch of probabilities.

Models imported from MONAI bundles were validated with MONAI's ``sliding_window_inference``, which places
tiles differently (:attr:`Placement.INTERVAL`: a fixed step ``int(patch * (1 - overlap))`` from the first
voxel, the last tile moved back to end at the last voxel) and weigh every voxel of a tile alike
(:attr:`Blend.CONSTANT`, MONAI's default) or by MONAI's own Gaussian (:attr:`Blend.MONAI_GAUSSIAN`); these are
choices here, so such a model's tiles and blend are MONAI's.

:func:`box_predict` is the other :class:`Window`: the network is fully convolutional, so one forward pass
over the whole brain box (padded to the network's divisor) replaces the overlapping tiles at a fraction of
their FLOPs; its instance normalisations then see the whole box rather than one tile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from enum import Enum
from functools import lru_cache

import numpy as np

__all__ = ["Blend", "Placement", "TileAccumulator", "Window", "box_predict", "gaussian_importance_map",
           "importance_map", "monai_gaussian_importance_map", "plan_tiles", "planned_tiles", "sliding_window_predict",
           "tile_starts"]

Tile = tuple[slice, slice, slice]
Predictor = Callable[[np.ndarray], np.ndarray]


class Window(str, Enum):
    """How the network covers a volume: overlapping ``tiles`` of its patch, or the whole ``box`` in one pass."""

    TILES = "tiles"
    BOX = "box"


class Placement(str, Enum):
    """Where tiles go along an axis: spread ``even``ly from the first voxel to the last (nnU-Net, bratsx), or at
    a fixed ``interval`` from the first voxel, the last one moved back to end at the last voxel (MONAI)."""

    EVEN = "even"
    INTERVAL = "interval"


class Blend(str, Enum):
    """How overlapping tiles are weighed: nnU-Net's ``gaussian`` importance map (:func:`gaussian_importance_map`),
    ``constant`` (MONAI's default mode: the plain mean of the tiles covering a voxel), or ``monai-gaussian``
    (MONAI's ``mode="gaussian"``: :func:`monai_gaussian_importance_map`)."""

    GAUSSIAN = "gaussian"
    CONSTANT = "constant"
    MONAI_GAUSSIAN = "monai-gaussian"


def tile_starts(size: int, patch: int, overlap: float, placement: Placement = Placement.EVEN) -> list[int]:
    """Start offsets of the tiles along one axis, first at 0 and last at ``size - patch``.

    Args:
        size: length of the (padded) axis; at least ``patch``.
        patch: tile length.
        overlap: fraction of a tile shared with its neighbour, in [0, 1).
        placement: ``even``: evenly spread; ``interval``: every ``int(patch * (1 - overlap))`` voxels (at
            least 1), the last start clamped to ``size - patch`` (MONAI's ``dense_patch_slices``).
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if size < patch:
        raise ValueError(f"axis of {size} voxels is smaller than the patch ({patch}); pad it first")
    if size == patch:
        return [0]
    if Placement(placement) is Placement.INTERVAL:
        step = max(int(patch * (1 - overlap)), 1)
        count = next(i for i in range(size) if i * step + patch >= size) + 1
        return [min(i * step, size - patch) for i in range(count)]
    count = math.ceil((size - patch) / (patch * (1.0 - overlap))) + 1
    return [round(i * (size - patch) / (count - 1)) for i in range(count)]


def plan_tiles(
    shape: tuple[int, int, int], patch: tuple[int, int, int], overlap: float, mask: np.ndarray | None = None,
    placement: Placement = Placement.EVEN,
) -> list[Tile]:
    """Tiles covering ``shape`` (already padded to at least ``patch``), without the empty ones.

    Args:
        shape: spatial shape of the volume.
        patch: tile shape.
        overlap: fraction shared between neighbouring tiles, per axis.
        mask: optional boolean brain mask of ``shape``; tiles with no voxel of it are skipped.
        placement: how tiles are spread along each axis (:func:`tile_starts`).
    """
    starts = [tile_starts(s, p, overlap, placement) for s, p in zip(shape, patch)]
    tiles = []
    for a in starts[0]:
        for b in starts[1]:
            for c in starts[2]:
                tile = (slice(a, a + patch[0]), slice(b, b + patch[1]), slice(c, c + patch[2]))
                if mask is None or mask[tile].any():
                    tiles.append(tile)
    return tiles


def _separable(axes: list[np.ndarray]) -> np.ndarray:
    """The 3D map that is the outer product of three float32 1D profiles."""
    return axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]


@lru_cache(maxsize=8)
def _cached_gaussian(patch: tuple[int, ...], sigma_scale: float) -> np.ndarray:
    axes = []
    for length in patch:
        sigma = length * sigma_scale
        axes.append(np.exp(-0.5 * ((np.arange(length) - length // 2) / sigma) ** 2))
    weights = _separable(axes)
    weights = (weights / weights.max()).astype(np.float32)
    weights[weights == 0] = weights[weights > 0].min()
    weights.flags.writeable = False
    return weights


def gaussian_importance_map(patch: tuple[int, int, int], sigma_scale: float = 0.125) -> np.ndarray:
    """nnU-Net's Gaussian weights over a tile (``compute_gaussian``), computed in float32.

    A sampled, separable Gaussian with sigma ``patch * sigma_scale`` and its peak, 1, at voxel
    ``patch // 2`` (nnU-Net filters a unit impulse there; its 4-sigma truncation never reaches a tile's
    edge), and weights that underflow to 0 raised to the smallest non-zero one. nnU-Net keeps the map and
    its sums in float16 (scaled by 10); here they stay float32, the only difference.

    Cached per patch size; the returned array is read-only.
    """
    return _cached_gaussian(tuple(int(p) for p in patch), float(sigma_scale))


#: MONAI's floor under its Gaussian weights (``compute_importance_map``).
MONAI_MIN_WEIGHT = 1e-3


@lru_cache(maxsize=8)
def _cached_monai_gaussian(patch: tuple[int, ...], sigma_scale: float) -> np.ndarray:
    axes = []
    for length in patch:
        offsets = np.arange(-(length - 1) / 2.0, (length - 1) / 2.0 + 1, dtype=np.float32)
        axes.append(np.exp(offsets**2 / np.float32(-2 * (length * sigma_scale) ** 2)))
    weights = _separable(axes)
    weights = np.maximum(weights, max(float(weights.min()), MONAI_MIN_WEIGHT)).astype(np.float32)
    weights.flags.writeable = False
    return weights


def monai_gaussian_importance_map(patch: tuple[int, int, int], sigma_scale: float = 0.125) -> np.ndarray:
    """MONAI's Gaussian weights over a tile (``compute_importance_map(mode="gaussian")``, MONAI 1.x), in float32.

    Unlike nnU-Net's map it is centred between the two middle voxels of an even axis (offsets ``-(patch - 1) / 2``
    to ``(patch - 1) / 2``), not scaled to a peak of 1, and every weight is raised to at least 1e-3 (MONAI's floor),
    so a tile's corners weigh far more than in nnU-Net's. Cached per patch size; the returned array is read-only.
    """
    return _cached_monai_gaussian(tuple(int(p) for p in patch), float(sigma_scale))


def importance_map(blend: Blend, patch: tuple[int, int, int]) -> np.ndarray:
    """The weights :class:`TileAccumulator` gives each voxel of a tile under ``blend``."""
    blend = Blend(blend)
    if blend is Blend.GAUSSIAN:
        return gaussian_importance_map(patch)
    if blend is Blend.MONAI_GAUSSIAN:
        return monai_gaussian_importance_map(patch)
    return np.ones(patch, dtype=np.float32)


class TileAccumulator:
    """Weighted sum of tile predictions over a volume, in float32.

    Args:
        channels: number of predicted channels.
        shape: spatial shape of the (padded) volume.
        patch: tile shape.
        blend: how a tile's voxels are weighed (:func:`importance_map`).
    """

    def __init__(self, channels: int, shape: tuple[int, int, int], patch: tuple[int, int, int],
                 blend: Blend = Blend.GAUSSIAN) -> None:
        self.values = np.zeros((channels, *shape), dtype=np.float32)
        self.weights = np.zeros(shape, dtype=np.float32)
        self.importance = importance_map(blend, patch)

    def add(self, prediction: np.ndarray, tile: Tile) -> None:
        """Add one tile's ``(channels, *patch)`` prediction."""
        self.values[(slice(None), *tile)] += prediction * self.importance
        self.weights[tile] += self.importance

    def finalize(self, uncovered: float | np.ndarray = 0.0) -> np.ndarray:
        """The blended prediction; voxels no tile covered get ``uncovered`` (a value, or one per channel)."""
        covered = self.weights > 0
        np.divide(self.values, self.weights, out=self.values, where=covered)
        if not covered.all():
            self.values[:, ~covered] = np.reshape(np.asarray(uncovered, dtype=np.float32), (-1, 1))
        return self.values


def _padding(shape: tuple[int, ...], target: tuple[int, ...]) -> list[tuple[int, int]]:
    """Symmetric padding that brings each axis up to ``target`` (none where it is already as large)."""
    pads = []
    for size, length in zip(shape, target):
        missing = max(length - size, 0)
        pads.append((missing // 2, missing - missing // 2))
    return pads


def _padded(image: np.ndarray, pads: list[tuple[int, int]]) -> tuple[np.ndarray, tuple[slice, ...]]:
    """``image`` zero-padded by ``pads`` on its spatial axes, and the slices that undo it."""
    spatial = image.shape[1:]
    crop = tuple(slice(before, before + size) for (before, _), size in zip(pads, spatial))
    return (np.pad(image, [(0, 0), *pads]) if any(sum(p) for p in pads) else image), crop


def _planned(image: np.ndarray, patch: tuple[int, int, int], overlap: float, mask: np.ndarray | None,
             placement: Placement = Placement.EVEN) -> tuple[np.ndarray, tuple[slice, ...], list[Tile]]:
    """The image padded to at least the patch, the slices that undo the padding, and its non-empty tiles."""
    pads = _padding(tuple(image.shape[1:]), patch)
    padded, crop = _padded(image, pads)
    padded_mask = np.pad(mask, pads) if mask is not None and any(sum(p) for p in pads) else mask
    tiles = plan_tiles(tuple(padded.shape[1:]), patch, overlap, padded_mask, placement)
    if not tiles:
        raise ValueError("the mask is empty: there is no tile to predict")
    return padded, crop, tiles


def planned_tiles(image: np.ndarray, patch: tuple[int, int, int], overlap: float = 0.5,
                  mask: np.ndarray | None = None, placement: Placement = Placement.EVEN) -> Iterator[np.ndarray]:
    """The ``(C, *patch)`` tiles :func:`sliding_window_predict` hands the network for ``image``, in its order
    (what a quantizer calibrates on)."""
    padded, _, tiles = _planned(image, patch, overlap, mask, placement)
    for tile in tiles:
        yield np.ascontiguousarray(padded[(slice(None), *tile)])


def box_predict(image: np.ndarray, divisor: int, predict: Predictor) -> np.ndarray:
    """Predict a whole volume in one forward pass, zero-padded (symmetrically) to a multiple of ``divisor``.

    Args:
        image: float32 ``(C, *spatial)`` network input (already normalised), e.g. the brain box.
        divisor: every spatial size the network takes is a multiple of it (``2 ** (stages - 1)``).
        predict: maps a float32 ``(1, C, *padded)`` batch to float32 ``(1, K, *padded)`` probabilities.

    Returns:
        float32 ``(K, *spatial)`` probabilities.
    """
    target = tuple(-(-size // divisor) * divisor for size in image.shape[1:])
    padded, crop = _padded(image, _padding(tuple(image.shape[1:]), target))
    prediction = np.asarray(predict(np.ascontiguousarray(padded[None])), dtype=np.float32)[0]
    return np.ascontiguousarray(prediction[(slice(None), *crop)])


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
    uncovered: float | np.ndarray = 0.0,
    placement: Placement = Placement.EVEN,
    blend: Blend = Blend.GAUSSIAN,
) -> np.ndarray:
    """Predict a whole volume tile by tile and blend the tiles (Gaussian weights by default).

    Args:
        image: float32 ``(C, *spatial)`` network input (already normalised).
        patch: tile shape the network takes.
        predict: maps a float32 ``(N, C, *patch)`` batch to float32 ``(N, K, *patch)`` probabilities.
        overlap: fraction of a tile shared with each neighbour (0.5 by default, as nnU-Net).
        batch_size: tiles per call of ``predict``.
        mask: optional brain mask of the spatial shape; tiles without brain are not predicted, and the
            voxels only they covered get ``uncovered``.
        on_tiles: called with ``(tiles done, tiles in all)`` after each call of ``predict``.
        uncovered: output of voxels no predicted tile covers: a value, or one per output channel.
        placement: how tiles are spread along each axis (:class:`Placement`).
        blend: how overlapping tiles are weighed (:class:`Blend`).

    Returns:
        float32 ``(K, *spatial)`` blended probabilities.

    Raises:
        ValueError: if ``mask`` is given and empty.
    """
    padded, crop, tiles = _planned(image, patch, overlap, mask, placement)
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
            accumulator = TileAccumulator(predictions.shape[1], tuple(padded.shape[1:]), patch, blend)
        for prediction, tile in zip(predictions, group):
            accumulator.add(prediction, tile)
        done += len(group)
        if on_tiles is not None:
            on_tiles(done, len(tiles))
    blended = accumulator.finalize(uncovered)
    return np.ascontiguousarray(blended[(slice(None), *crop)])
