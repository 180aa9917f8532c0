"""``bratsx evaluate``: BraTS metrics for segmentations made by anything, against references.

Predictions and references are matched by case id (:func:`segmentation_files`). Each file's label
convention is read from its values (BraTS 2018-2021 or 2023+), or given; both must lie on the same
grid. Every case of either folder is accounted for: scored, failed, missing (a reference without a
prediction), unreferenced (a prediction without a reference) or ambiguous (two candidate files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cases import nifti_stem
from ..errors import BratsxError, CaseError
from ..imageio import AFFINE_TOLERANCE, label_convention, read_label_file
from ..labels import LabelConvention, regions_from_labels
from ..lesionwise import lesion_wise_metrics
from ..metrics import case_metrics
from .records import CaseRecord, CaseStatus

__all__ = ["SegmentationFiles", "evaluate_directories", "segmentation_files"]

_SEGMENTATION_HINTS = ("seg", "label", "pred")


@dataclass(frozen=True)
class SegmentationFiles:
    """Segmentation files of a folder by case id, and the ids with more than one candidate."""

    found: dict[str, Path]
    ambiguous: dict[str, list[Path]]


def segmentation_files(folder: Path) -> SegmentationFiles:
    """Segmentation files by case id: ``<id>.nii[.gz]`` files (not ``*_probabilities``), or case folders
    holding one file whose name contains seg, label or pred.

    The one finder of references and predictions, for ``bratsx infer --labels`` and ``bratsx evaluate``.
    """
    found: dict[str, Path] = {}
    ambiguous: dict[str, list[Path]] = {}
    for path in sorted(Path(folder).iterdir()):
        stem = nifti_stem(path)
        if path.is_file() and stem and not stem.endswith("_probabilities"):
            candidates = [path]
            case_id = stem
        elif path.is_dir():
            candidates = sorted(p for p in path.iterdir() if p.is_file()
                                and any(h in (nifti_stem(p) or "").lower() for h in _SEGMENTATION_HINTS))
            case_id = path.name
        else:
            continue
        if case_id in found:
            ambiguous[case_id] = [found.pop(case_id), *candidates]
        elif case_id in ambiguous:
            ambiguous[case_id].extend(candidates)
        elif len(candidates) == 1:
            found[case_id] = candidates[0]
        elif candidates:
            ambiguous[case_id] = candidates
    return SegmentationFiles(found, ambiguous)


def _regions(path: Path, case_id: str, convention: LabelConvention | None):
    data, geometry = read_label_file(path, case_id)
    return regions_from_labels(data, label_convention(data, case_id, path, convention)), geometry


def _score(case_id: str, predicted: Path, reference: Path, convention: LabelConvention | None,
           lesion_wise: bool) -> CaseRecord:
    record = CaseRecord(case_id, CaseStatus.OK, output=str(predicted))
    try:
        prediction, geometry = _regions(predicted, case_id, convention)
        truth, reference_geometry = _regions(reference, case_id, convention)
        if geometry.shape != reference_geometry.shape or np.abs(
                geometry.affine - reference_geometry.affine).max() > AFFINE_TOLERANCE:
            raise CaseError(case_id, f"prediction grid {geometry.shape} {geometry.orientation} does not match "
                            f"the reference's {reference_geometry.shape} {reference_geometry.orientation}", predicted)
        record.metrics = case_metrics(prediction, truth, geometry.spacing)
        if lesion_wise:
            record.metrics.update(lesion_wise_metrics(prediction, truth, geometry.spacing))
    except CaseError as error:
        record.status, record.error = CaseStatus.FAILED, str(error)
    return record


def evaluate_directories(
    predictions: Path, references: Path, convention: LabelConvention | None = None, lesion_wise: bool = False
) -> list[CaseRecord]:
    """One record per case id found in either folder, sorted by id.

    With ``lesion_wise``, the BraTS 2023 lesion-wise Dice and HD95 are added per region.

    Raises:
        BratsxError: when no case id appears in both folders.
    """
    predicted, referenced = segmentation_files(predictions), segmentation_files(references)
    if not set(predicted.found) & set(referenced.found):
        raise BratsxError(f"no case id appears both in {predictions} and in {references}")
    records = []
    for case_id in sorted({*predicted.found, *referenced.found, *predicted.ambiguous, *referenced.ambiguous}):
        for side, files in (("predictions", predicted), ("references", referenced)):
            if case_id in files.ambiguous:
                names = ", ".join(p.name for p in files.ambiguous[case_id])
                records.append(CaseRecord(case_id, "ambiguous", error=f"case {case_id}: several candidate "
                                          f"segmentations in {side} ({names}); keep one"))
                break
        else:
            if case_id not in predicted.found:
                records.append(CaseRecord(case_id, "missing", error=f"case {case_id}: no prediction in {predictions}"))
            elif case_id not in referenced.found:
                records.append(CaseRecord(case_id, "unreferenced", output=str(predicted.found[case_id]),
                                          error=f"case {case_id}: no reference in {references}"))
            else:
                records.append(_score(case_id, predicted.found[case_id], referenced.found[case_id], convention,
                                      lesion_wise))
    return records
