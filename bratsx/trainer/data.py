"""Training data: case splits, and patches sampled from the cache as a pure function of their index.

Every patch is drawn from ``numpy.random.default_rng([seed, index])``, so the stream of training
samples depends on nothing but the seed and the global sample index: not on the number of data
loader workers, not on when a run was interrupted. That is what makes ``--resume`` exact, and what
lets distributed ranks draw disjoint samples by index alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..crossval import Split
from ..errors import BratsxError
from ..labels import regions_from_labels
from .cache import CACHE_CONVENTION, CachedCase

__all__ = [
    "IndexRange",
    "PatchDataset",
    "PatchSampler",
    "Split",
    "fraction_split",
    "k_fold_splits",
    "read_split_file",
    "write_split_file",
]

#: Foreground voxels remembered per region and case, to centre oversampled patches on.
MAX_FOREGROUND_LOCATIONS = 10_000


def k_fold_splits(case_ids: Sequence[str], folds: int = 5, seed: int = 0) -> list[Split]:
    """Shuffle the cases once and cut them into ``folds`` validation folds."""
    if len(case_ids) < folds:
        raise BratsxError(f"{len(case_ids)} case(s) cannot make {folds} folds; use --val-fraction or more cases")
    order = list(case_ids)
    np.random.default_rng(seed).shuffle(order)
    splits = []
    for fold in range(folds):
        val = set(order[fold::folds])
        splits.append(Split(tuple(c for c in case_ids if c not in val), tuple(c for c in case_ids if c in val)))
    return splits


def fraction_split(case_ids: Sequence[str], fraction: float, seed: int = 0) -> Split:
    """Hold out ``fraction`` of the cases (at least one) for validation."""
    if not 0.0 < fraction < 1.0:
        raise BratsxError(f"--val-fraction must be between 0 and 1, got {fraction}")
    if len(case_ids) < 2:
        raise BratsxError("training with validation needs at least 2 cases")
    order = list(case_ids)
    np.random.default_rng(seed).shuffle(order)
    val = set(order[: max(1, round(len(order) * fraction))])
    return Split(tuple(c for c in case_ids if c not in val), tuple(c for c in case_ids if c in val))


def write_split_file(path: Path, splits: Sequence[Split]) -> None:
    """Write splits as JSON: a list of ``{"train": [...], "val": [...]}``, one per fold."""
    path.write_text(json.dumps([s.to_dict() for s in splits], indent=2) + "\n")


def read_split_file(path: Path, fold: int = 0) -> Split:
    """Read one fold from a split file (a list of folds, or a single ``{"train", "val"}`` object)."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise BratsxError(f"{path}: cannot read the split file ({error})") from error
    folds = content if isinstance(content, list) else [content]
    if not 0 <= fold < len(folds):
        raise BratsxError(f"{path}: has {len(folds)} fold(s), fold {fold} asked for")
    entry = folds[fold]
    if not isinstance(entry, dict) or not {"train", "val"} <= set(entry):
        raise BratsxError(f"{path}: each fold needs 'train' and 'val' lists of case ids")
    return Split(tuple(entry["train"]), tuple(entry["val"]))


def _crop_with_padding(array: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """``array[..., start:start+size]`` on the last three axes, zero where it reaches outside."""
    leading = array.shape[:-3]
    out = np.zeros((*leading, *size), dtype=array.dtype)
    source, target = [], []
    for begin, length, extent in zip(start, size, array.shape[-3:]):
        low, high = max(begin, 0), min(begin + length, extent)
        source.append(slice(low, max(low, high)))
        target.append(slice(low - begin, low - begin + max(0, high - low)))
    out[(..., *target)] = array[(..., *source)]
    return out


class PatchSampler:
    """Draws training patches from cached cases, with foreground oversampling.

    With probability ``foreground_fraction`` a patch is centred on a tumour voxel of a region drawn
    uniformly among WT, TC and ET (those present in the case), so that small enhancing tumour is
    seen as often as the large edema; otherwise it is placed uniformly at random. Cases smaller
    than the patch are padded with zeros.

    Args:
        cases: cached training cases.
        patch: patch shape (canonical axes).
        foreground_fraction: share of patches centred on tumour.
        seed: sample stream seed.
    """

    def __init__(
        self, cases: Sequence[CachedCase], patch: tuple[int, int, int], foreground_fraction: float, seed: int
    ) -> None:
        if not cases:
            raise BratsxError("no training cases")
        self.cases = list(cases)
        self.patch = tuple(patch)
        self.foreground_fraction = foreground_fraction
        self.seed = seed
        self.locations = [self._foreground_locations(case, i) for i, case in enumerate(self.cases)]

    def _foreground_locations(self, case: CachedCase, index: int) -> list[np.ndarray]:
        regions = regions_from_labels(np.asarray(case.labels()), CACHE_CONVENTION)
        rng = np.random.default_rng([self.seed, index, 7])
        found = []
        for mask in regions:
            coordinates = np.argwhere(mask).astype(np.int32)
            if len(coordinates) > MAX_FOREGROUND_LOCATIONS:
                coordinates = coordinates[rng.choice(len(coordinates), MAX_FOREGROUND_LOCATIONS, replace=False)]
            if len(coordinates):
                found.append(coordinates)
        return found

    def _start(self, rng: np.random.Generator, shape: Sequence[int], centre: np.ndarray | None) -> list[int]:
        starts = []
        for axis, (extent, length) in enumerate(zip(shape, self.patch)):
            low, high = min(0, extent - length), max(0, extent - length)
            if centre is None:
                starts.append(int(rng.integers(low, high + 1)))
            else:
                starts.append(int(np.clip(centre[axis] - length // 2, low, high)))
        return starts

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``index``-th patch: float32 image ``(4, *patch)`` and uint8 tissue labels ``patch``."""
        rng = np.random.default_rng([self.seed, index])
        case_index = int(rng.integers(len(self.cases)))
        case = self.cases[case_index]
        image, labels = case.image(), case.labels()
        centre = None
        regions = self.locations[case_index]
        if regions and rng.random() < self.foreground_fraction:
            coordinates = regions[int(rng.integers(len(regions)))]
            centre = coordinates[int(rng.integers(len(coordinates)))]
        start = self._start(rng, labels.shape, centre)
        return _crop_with_padding(image, start, self.patch), _crop_with_padding(labels, start, self.patch)


class PatchDataset(Dataset):
    """Torch view of a :class:`PatchSampler`: item ``i`` is sample ``i`` as tensors."""

    def __init__(self, sampler: PatchSampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:  # indices are unbounded; the sampler decides which are drawn
        return 2**62

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, labels = self.sampler.sample(index)
        return torch.from_numpy(image), torch.from_numpy(labels)


class IndexRange(Sampler[int]):
    """Sample indices of one rank from ``start`` (inclusive) to ``stop`` (exclusive) training steps.

    Step ``s`` of rank ``r`` out of ``world`` draws the ``batch`` indices
    ``(s * world + r) * batch + b``: disjoint across ranks, the same whatever the worker count.
    """

    def __init__(self, start_step: int, stop_step: int, batch: int, rank: int = 0, world: int = 1) -> None:
        self.start_step, self.stop_step = start_step, stop_step
        self.batch, self.rank, self.world = batch, rank, world

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.stop_step):
            first = (step * self.world + self.rank) * self.batch
            yield from range(first, first + self.batch)

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step) * self.batch
