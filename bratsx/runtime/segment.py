"""One case, end to end: load -> preprocess -> sliding window -> paste back -> regions -> labels -> metrics.

:func:`segment_case` is the single path from a case to its segmentation. ``bratsx infer`` schedules it
over directories (threads, worker processes, Ray actors), the export accuracy gates compare two
backends through it, the bench times it and the web app's jobs call it, so all of them compute the
same thing. It never writes files: writing is the scheduler's.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..cases import Case
from ..contract import ModelContract
from ..errors import LabelError
from ..imageio import LoadedCase, load_case
from ..labels import LabelConvention, labels_from_regions, regions_from_labels, regions_from_probabilities
from ..lesionwise import lesion_wise_metrics
from ..metrics import case_metrics
from ..preprocessing import Preprocessed, paste, preprocess
from ..sliding_window import sliding_window_predict
from .backends import Backend

__all__ = ["PreparedCase", "SegmentOptions", "Segmentation", "STAGES", "prepare_case", "segment_case",
           "tile_predictor"]

#: Stages timed for every case, in order.
STAGES = ("load", "preprocess", "inference", "postprocess", "write")

Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, kw_only=True)
class SegmentOptions:
    """How a case is segmented.

    Attributes:
        overlap: sliding-window overlap (fraction of a tile shared with each neighbour).
        sw_batch: tiles per backend call (``None``: the backend's preferred batch).
        tta: average the 8 mirrorings of every tile (batched with the tiles; 8x the work).
        convention: label convention of the output (default: the input's own; plain folders
            without labels get BraTS 2018-2021's 0/1/2/4).
        min_component_voxels: remove tumour components smaller than this.
        et_to_ncr_below: relabel ET as necrotic core when fewer ET voxels than this are predicted.
    """

    overlap: float = 0.5
    sw_batch: int | None = None
    tta: bool = False
    convention: LabelConvention | None = None
    min_component_voxels: int = 0
    et_to_ncr_below: int = 0


@dataclass
class PreparedCase:
    """A case loaded and preprocessed: what the loader thread hands the backend."""

    loaded: LoadedCase
    ready: Preprocessed
    seconds: dict[str, float]
    label_error: str | None = None


@dataclass
class Segmentation:
    """A segmented case, in canonical orientation (write it back with the loaded case's geometry).

    Attributes:
        loaded: the case as loaded.
        probabilities: float32 ``(C, z, y, x)`` over the full volume (0 outside the brain box).
        regions: boolean ``(3, z, y, x)`` WT, TC, ET after post-processing.
        labels: uint8 ``(z, y, x)`` label map in ``convention``.
        convention: label values of ``labels``.
        metrics: BraTS metrics against the reference, when the case has a readable one: per region the
            whole-case Dice, sensitivity, specificity, HD95 and volumes, and the BraTS 2023 lesion-wise
            Dice and HD95 with lesion counts (:mod:`bratsx.lesionwise`).
        metrics_error: why there are no metrics although the case has a reference.
        seconds: per stage (load, preprocess, inference, postprocess).
    """

    loaded: LoadedCase
    probabilities: np.ndarray
    regions: np.ndarray
    labels: np.ndarray
    convention: LabelConvention
    metrics: dict[str, float] | None = None
    metrics_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def tile_predictor(backends: Sequence[Backend], tta: bool) -> Predictor:
    """One tile predictor averaging several models and, with ``tta``, the 8 mirrorings of each tile.

    The mirrored copies travel in one batch with the tiles, so a backend sees ``8 x`` larger batches
    rather than 8 times as many calls.
    """
    flips = [axes for n in range(4) for axes in itertools.combinations((2, 3, 4), n)] if tta else [()]

    def predict(tiles: np.ndarray) -> np.ndarray:
        stacked = np.concatenate([np.flip(tiles, axes) if axes else tiles for axes in flips])
        total = None
        for backend in backends:
            out = np.asarray(backend.run(stacked), dtype=np.float32)
            for i, axes in enumerate(flips):
                part = out[i * len(tiles) : (i + 1) * len(tiles)]
                part = np.flip(part, axes) if axes else part
                total = part.copy() if total is None else total + part
        return total / (len(backends) * len(flips))

    return predict


def prepare_case(case: Case, contract: ModelContract) -> PreparedCase:
    """Load ``case`` (with its reference when it has one) and preprocess it as ``contract`` says.

    A reference segmentation that cannot be read does not stop the case: it is loaded without one,
    and the problem is kept in ``label_error`` to be reported beside the segmentation.

    Raises:
        CaseError: the images cannot be used.
    """
    started = time.perf_counter()
    label_error = None
    try:
        loaded = load_case(case, with_label=case.label is not None)
    except LabelError as error:
        loaded, label_error = load_case(case, with_label=False), str(error)
    loaded_at = time.perf_counter()
    ready = preprocess(loaded.image, contract.crop_margin)
    seconds = {"load": loaded_at - started, "preprocess": time.perf_counter() - loaded_at}
    return PreparedCase(loaded, ready, seconds, label_error)


def _postprocess(regions: np.ndarray, options: SegmentOptions) -> np.ndarray:
    """Small-component removal and the ET-to-necrosis rule on WT/TC/ET masks."""
    if options.min_component_voxels > 0 and regions[0].any():
        components, count = ndimage.label(regions[0])
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        small = np.flatnonzero(sizes < options.min_component_voxels)
        small = small[small > 0]
        if small.size:
            regions[:, np.isin(components, small)] = False
    if options.et_to_ncr_below > 0 and 0 < np.count_nonzero(regions[2]) < options.et_to_ncr_below:
        regions[2] = False  # the voxels stay in TC: they become necrotic core
    return regions


def segment_case(
    case: Case | PreparedCase,
    backends: Sequence[Backend],
    contract: ModelContract,
    options: SegmentOptions | None = None,
    on_tiles: Callable[[int, int], None] | None = None,
) -> Segmentation:
    """Segment one case.

    Args:
        case: a discovered case, or one already prepared by :func:`prepare_case` (as a scheduler's
            loader thread does).
        backends: one or more open models sharing ``contract``'s patch and output mode (averaged).
        contract: the models' contract.
        options: how to segment.
        on_tiles: called with ``(tiles done, tiles in all)`` while the backend runs.

    Returns:
        The segmentation, with metrics when the case has a reference.

    Raises:
        CaseError: the case cannot be loaded.
    """
    options = options or SegmentOptions()
    prepared = case if isinstance(case, PreparedCase) else prepare_case(case, contract)
    loaded, ready = prepared.loaded, prepared.ready
    seconds = dict(prepared.seconds)
    sw_batch = options.sw_batch or backends[0].preferred_batch

    started = time.perf_counter()
    cropped = sliding_window_predict(ready.image, contract.patch_size, tile_predictor(backends, options.tta),
                                     options.overlap, sw_batch, ready.mask, on_tiles)
    seconds["inference"] = time.perf_counter() - started

    started = time.perf_counter()
    probabilities = paste(cropped, ready.box, ready.full_shape)
    regions = _postprocess(regions_from_probabilities(probabilities, contract.output_mode), options)
    convention = options.convention or loaded.convention or loaded.case.convention or LabelConvention.BRATS2020
    labels = labels_from_regions(regions, convention)
    metrics = None
    if loaded.label is not None:
        reference = regions_from_labels(loaded.label, loaded.convention)
        spacing = loaded.geometry.canonical_spacing
        metrics = {**case_metrics(regions, reference, spacing), **lesion_wise_metrics(regions, reference, spacing)}
    seconds["postprocess"] = time.perf_counter() - started
    return Segmentation(loaded, probabilities, regions, labels, convention, metrics, prepared.label_error, seconds)
