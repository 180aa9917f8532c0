"""Choosing a post-processing spec on data: a grid search over predictions made once.

The network runs once per case (:func:`collect_tuning_cases`, without post-processing); every grid point is
then scored on those masks, cropped to the tumour, with the lesion-wise Dice of :mod:`bratsx.lesionwise`
(no HD95) or the whole-region Dice. The search goes region by region, as the masks nest: WT's component
thresholds first (scored on WT), applied; then TC's (scored on TC); then ET's together with the ET -> NCR
volume (scored on ET). Grid points are tried from the least to the most aggressive and a point replaces the
best only when it scores higher, so ties keep the gentler spec; masks already scored are not scored again.

The cases must be ones the model did not train on (the run's validation split, or the out-of-fold
predictions of a cross-validation): a spec tuned on training cases is fitted to the network's memory.
:func:`leave_one_out` says how much of a gain survives on a case left out of the tuning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
from scipy import ndimage

from .labels import REGION_ORDER
from .lesionwise import LesionRule, lesion_scores
from .metrics import dice
from .postprocess import NO_POSTPROCESS, PostprocessSpec, apply_postprocess, nest

__all__ = ["ET_TO_NCR_GRID_MM3", "LARGEST_RATIO_GRID", "MIN_VOLUME_GRID_MM3", "FolderTuning", "LeaveOneOut",
           "TuneMetric", "TuningCase", "collect_tuning_cases", "leave_one_out", "score_table", "tune_folder",
           "tune_spec", "tuning_case", "tuning_cases_from_files"]

#: Smallest component kept, per region (mm^3), tried in this order.
MIN_VOLUME_GRID_MM3 = (0.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0)
#: Smallest component kept as a fraction of the region's largest, tried in this order.
LARGEST_RATIO_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
#: ET volume (mm^3) below which ET is relabelled as necrotic core, tried in this order.
ET_TO_NCR_GRID_MM3 = (0.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0)

_REGIONS = tuple(region.value for region in REGION_ORDER)
_COMPONENTS = np.ones((3, 3, 3), bool)
#: Voxels kept around the tumour when cropping: the lesion-wise reference dilation (3) and one more.
_CROP_MARGIN = LesionRule().dilation_iterations + 1


class TuneMetric(str, Enum):
    """What the search maximises: BraTS 2023 lesion-wise Dice, or whole-region Dice."""

    LESION_WISE = "lesion-wise"
    DICE = "dice"


@dataclass(frozen=True)
class TuningCase:
    """One case's prediction before post-processing and its reference, cropped around both.

    Attributes:
        case_id: the case.
        prediction: boolean ``(3, z, y, x)`` WT/TC/ET as the network predicted them (no post-processing).
        reference: boolean ``(3, z, y, x)``, the reference regions.
        spacing: voxel size in mm.
    """

    case_id: str
    prediction: np.ndarray
    reference: np.ndarray
    spacing: tuple[float, float, float]


def tuning_case(case_id: str, prediction: np.ndarray, reference: np.ndarray,
                spacing: Sequence[float]) -> TuningCase:
    """A :class:`TuningCase`, cropped to the box of both masks grown by the lesion-wise dilation (which scores
    as the whole volume does, and costs a fraction); the prediction nested as its label map reads it
    (:func:`bratsx.postprocess.nest`)."""
    prediction = nest(np.array(prediction, dtype=bool))
    union = prediction.any(axis=0) | reference.any(axis=0)
    where = [np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    if where[0].size == 0:
        box = (slice(0, 1),) * 3
    else:
        box = tuple(slice(max(int(w[0]) - _CROP_MARGIN, 0), min(int(w[-1]) + 1 + _CROP_MARGIN, size))
                    for w, size in zip(where, union.shape))
    return TuningCase(case_id, np.ascontiguousarray(prediction[(slice(None), *box)], dtype=bool),
                      np.ascontiguousarray(reference[(slice(None), *box)], dtype=bool),
                      tuple(float(s) for s in spacing))


def _region_score(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float],
                  metric: TuneMetric) -> float:
    if metric is TuneMetric.DICE:
        return dice(prediction, reference)
    return lesion_scores(prediction, reference, spacing, with_hd95=False).dice


def score_table(cases: Sequence[TuningCase], spec: PostprocessSpec) -> dict[str, dict[str, float]]:
    """Mean Dice and lesion-wise Dice per region over ``cases`` with ``spec`` applied:
    ``{"dice": {"WT": ..}, "lesion-wise": {"WT": ..}}``."""
    table: dict[str, dict[str, list[float]]] = {m.value: {r: [] for r in _REGIONS} for m in TuneMetric}
    for case in cases:
        processed = apply_postprocess(case.prediction.copy(), case.spacing, spec)
        for channel, region in enumerate(_REGIONS):
            for metric in TuneMetric:
                table[metric.value][region].append(_region_score(processed[channel], case.reference[channel],
                                                                 case.spacing, metric))
    return {metric: {region: float(np.mean(values)) if values else float("nan")
                     for region, values in per_region.items()} for metric, per_region in table.items()}


@dataclass
class _Components:
    """One case's components of one region: labels and sizes (voxels), computed once per region."""

    labels: np.ndarray
    sizes: np.ndarray

    @classmethod
    def of(cls, mask: np.ndarray) -> _Components:
        labels, count = ndimage.label(mask, structure=_COMPONENTS)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        sizes[0] = 0
        return cls(labels, sizes)

    def dropped(self, min_voxels: float, ratio: float) -> tuple[int, ...]:
        """Component ids dropped by the thresholds (the same rule as
        :func:`bratsx.postprocess.filter_components`)."""
        if len(self.sizes) == 1:
            return ()
        limit = max(min_voxels, ratio * float(self.sizes.max()))
        return tuple(int(i) for i in np.flatnonzero(self.sizes < limit) if i > 0)


def _search_region(cases: Sequence[TuningCase], current: list[np.ndarray], channel: int,
                   metric: TuneMetric) -> tuple[float, float, float]:
    """Best ``(min_volume_mm3, min_largest_ratio, et_to_ncr_below_mm3)`` for one region on the current masks."""
    components = [_Components.of(masks[channel]) for masks in current]
    reference = [case.reference[channel] for case in cases]
    ncr_grid = ET_TO_NCR_GRID_MM3 if _REGIONS[channel] == "ET" else (0.0,)
    cache: dict[tuple[int, tuple[int, ...], bool], float] = {}

    def case_score(index: int, dropped: tuple[int, ...], et_to_ncr_mm3: float) -> float:
        case, parts = cases[index], components[index]
        voxel = float(np.prod(case.spacing))
        kept_voxels = int(parts.sizes.sum() - parts.sizes[list(dropped)].sum()) if dropped else int(parts.sizes.sum())
        relabelled = 0 < kept_voxels * voxel < et_to_ncr_mm3
        key = (index, dropped, relabelled)
        if key not in cache:
            mask = np.zeros_like(reference[index]) if relabelled else (
                current[index][channel] & ~np.isin(parts.labels, dropped) if dropped else current[index][channel])
            cache[key] = _region_score(mask, reference[index], case.spacing, metric)
        return cache[key]

    best, best_score = (0.0, 0.0, 0.0), -np.inf
    for et_to_ncr in ncr_grid:
        for min_volume in MIN_VOLUME_GRID_MM3:
            for ratio in LARGEST_RATIO_GRID:
                score = float(np.mean([
                    case_score(i, components[i].dropped(min_volume / float(np.prod(case.spacing)), ratio), et_to_ncr)
                    for i, case in enumerate(cases)]))
                if score > best_score + 1e-12:
                    best, best_score = (min_volume, ratio, et_to_ncr), score
    return best


def tune_spec(cases: Sequence[TuningCase], metric: TuneMetric | str = TuneMetric.LESION_WISE) -> PostprocessSpec:
    """The spec that scores best on ``cases`` by ``metric`` (the search in the module docstring).

    Args:
        cases: predictions without post-processing of cases the model did not train on, with references.
        metric: what to maximise.

    Returns:
        The chosen spec (:data:`~bratsx.postprocess.NO_POSTPROCESS` when nothing helps).
    """
    metric = TuneMetric(metric)
    if not cases:
        return NO_POSTPROCESS
    current = [case.prediction.copy() for case in cases]
    volumes, ratios, et_to_ncr = {}, {}, 0.0
    for channel, region in enumerate(_REGIONS):
        volumes[region], ratios[region], chosen_ncr = _search_region(cases, current, channel, metric)
        if region == "ET":
            et_to_ncr = chosen_ncr
        step = PostprocessSpec(min_volume_mm3={region: volumes[region]}, min_largest_ratio={region: ratios[region]})
        current = [apply_postprocess(masks, case.spacing, step) for masks, case in zip(current, cases)]
    return PostprocessSpec(min_volume_mm3=volumes, min_largest_ratio=ratios, et_to_ncr_below_mm3=et_to_ncr)


@dataclass(frozen=True)
class LeaveOneOut:
    """Leave-one-out over the tuning: each case scored with the spec tuned on the others.

    Attributes:
        specs: per left-out case, the spec tuned without it.
        before: mean per metric and region, no post-processing.
        after: mean per metric and region, each case with its left-out spec.
    """

    specs: dict[str, PostprocessSpec]
    before: dict[str, dict[str, float]]
    after: dict[str, dict[str, float]]


def leave_one_out(cases: Sequence[TuningCase], metric: TuneMetric | str = TuneMetric.LESION_WISE) -> LeaveOneOut:
    """Tune on all cases but one, score the one left out, for each case; average (needs 2 cases or more)."""
    specs = {case.case_id: tune_spec([other for other in cases if other is not case], metric) for case in cases}
    per_case_after = [score_table([case], specs[case.case_id]) for case in cases]
    after = {m: {r: float(np.mean([t[m][r] for t in per_case_after])) for r in _REGIONS} for m in per_case_after[0]}
    return LeaveOneOut(specs, score_table(cases, NO_POSTPROCESS), after)


def collect_tuning_cases(model: Path, cases: Sequence, backend: str = "auto", threads: int | None = None,
                         on_case: Callable[[str], None] | None = None) -> list[TuningCase]:
    """Segment each labelled case once, without post-processing, into :class:`TuningCase` s.

    Args:
        model: a model folder (or anything :func:`~bratsx.runtime.models.open_model` takes).
        cases: discovered :class:`~bratsx.cases.Case` s, each with a reference segmentation.
        backend: the backend to run.
        threads: CPU threads.
        on_case: called with each case id once it is segmented.

    Raises:
        BratsxError: the model cannot be opened; a case has no reference or cannot be loaded (CaseError).
    """
    from .errors import CaseError
    from .labels import regions_from_labels
    from .runtime.models import open_model
    from .runtime.runner import Runner
    from .runtime.segment import SegmentOptions, segment_case

    collected = []
    with open_model(model, backend, threads=threads) as opened:
        runner = Runner.from_backends([opened.backend], opened.contract, SegmentOptions(postprocess=NO_POSTPROCESS))
        for case in cases:
            if case.label is None:
                raise CaseError(case.case_id, "no reference segmentation: tuning needs labelled cases")
            result = segment_case(case, runner)
            if result.loaded.label is None:
                raise CaseError(case.case_id, f"reference segmentation unreadable ({result.metrics_error})",
                                case.label)
            reference = regions_from_labels(result.loaded.label, result.loaded.convention)
            collected.append(tuning_case(case.case_id, result.regions, reference,
                                         result.loaded.geometry.canonical_spacing))
            if on_case is not None:
                on_case(case.case_id)
    return collected


def tuning_cases_from_files(predictions: Path, cases: Sequence) -> list[TuningCase]:
    """:class:`TuningCase` s from segmentations already written without post-processing (the out-of-fold
    predictions of a cross-validation, or ``bratsx infer --postprocess none``), against the cases' references.

    Raises:
        CaseError: a case has no reference, no prediction, or files that cannot be read or do not match.
    """
    from .errors import CaseError
    from .runtime.evaluate import read_regions, segmentation_files

    found = segmentation_files(predictions).found
    collected = []
    for case in cases:
        if case.label is None:
            raise CaseError(case.case_id, "no reference segmentation: tuning needs labelled cases")
        if case.case_id not in found:
            raise CaseError(case.case_id, f"no prediction in {predictions}")
        prediction, geometry = read_regions(found[case.case_id], case.case_id)
        reference, reference_geometry = read_regions(case.label, case.case_id)
        if geometry.shape != reference_geometry.shape:
            raise CaseError(case.case_id, f"prediction shape {geometry.shape} differs from the reference's "
                            f"{reference_geometry.shape}", found[case.case_id])
        collected.append(tuning_case(case.case_id, prediction, reference, geometry.spacing))
    return collected


@dataclass(frozen=True)
class FolderTuning:
    """What :func:`tune_folder` chose and measured.

    Attributes:
        spec: the spec written into the folder.
        metric: what it maximised.
        case_ids: the cases it was tuned on.
        before: mean per metric and region without post-processing.
        after: the same with ``spec`` (on the cases it was tuned on: optimistic).
        loo: leave-one-out over the same cases (``None`` with fewer than 2 cases).
    """

    spec: PostprocessSpec
    metric: TuneMetric
    case_ids: tuple[str, ...]
    before: dict[str, dict[str, float]]
    after: dict[str, dict[str, float]]
    loo: LeaveOneOut | None


def tune_folder(folder: Path, cases: Sequence[TuningCase], metric: TuneMetric | str,
                with_leave_one_out: bool = False) -> FolderTuning:
    """Tune a spec on ``cases`` and store it in the model folder ``folder`` (its previous spec kept in the history).

    Raises:
        BratsxError: ``folder`` is not a model folder, or there is no case to tune on.
    """
    from .errors import BratsxError
    from .modelfolder import ModelFolder, set_postprocess

    model = ModelFolder.read(folder)
    if not cases:
        raise BratsxError(f"{folder}: no labelled case to tune the post-processing on")
    metric = TuneMetric(metric)
    spec = tune_spec(cases, metric)
    before, after = score_table(cases, NO_POSTPROCESS), score_table(cases, spec)
    loo = leave_one_out(cases, metric) if with_leave_one_out and len(cases) > 1 else None
    how = {"metric": metric.value, "cases": [case.case_id for case in cases], "before": before, "after": after}
    if loo is not None:
        how["leave_one_out"] = {"before": loo.before, "after": loo.after}
    set_postprocess(model, spec, how)
    return FolderTuning(spec, metric, tuple(case.case_id for case in cases), before, after, loo)
