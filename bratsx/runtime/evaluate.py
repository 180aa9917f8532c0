"""``bratsx evaluate``: BraTS metrics for segmentations made by anything, against references.

Predictions and references are matched by case id: either ``<id>.nii[.gz]`` files or case folders
holding one segmentation file. Each file's label convention is read from its values (BraTS
2018-2021 or 2023+), or given; both must lie on the same grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cases import nifti_stem
from ..errors import BratsxError, CaseError
from ..imageio import AFFINE_TOLERANCE, label_convention, read_label_file
from ..labels import LabelConvention, regions_from_labels
from ..metrics import case_metrics
from .infer import CaseResult

__all__ = ["evaluate_directories", "segmentation_files"]

_SEGMENTATION_HINTS = ("seg", "label", "pred")


def segmentation_files(folder: Path) -> dict[str, Path]:
    """Segmentation files by case id: ``<id>.nii[.gz]`` files, or case folders with one seg file."""
    found: dict[str, Path] = {}
    for path in sorted(Path(folder).iterdir()):
        stem = nifti_stem(path)
        if path.is_file() and stem and not stem.endswith("_probabilities"):
            found[stem] = path
        elif path.is_dir():
            segs = [p for p in path.iterdir()
                    if p.is_file() and any(h in (nifti_stem(p) or "").lower() for h in _SEGMENTATION_HINTS)]
            if len(segs) == 1:
                found[path.name] = segs[0]
    return found


def _regions(path: Path, case_id: str, convention: LabelConvention | None):
    data, geometry = read_label_file(path, case_id)
    return regions_from_labels(data, label_convention(data, case_id, path, convention)), geometry


def evaluate_directories(
    predictions: Path, references: Path, convention: LabelConvention | None = None
) -> list[CaseResult]:
    """Metrics for every case that has both a prediction and a reference.

    Raises:
        BratsxError: when no case id appears in both folders.
    """
    predicted, referenced = segmentation_files(predictions), segmentation_files(references)
    common = sorted(set(predicted) & set(referenced))
    if not common:
        raise BratsxError(f"no case id appears both in {predictions} and in {references}")
    results = []
    for case_id in common:
        result = CaseResult(case_id, predicted[case_id])
        try:
            prediction, geometry = _regions(predicted[case_id], case_id, convention)
            reference, reference_geometry = _regions(referenced[case_id], case_id, convention)
            if geometry.shape != reference_geometry.shape or np.abs(
                    geometry.affine - reference_geometry.affine).max() > AFFINE_TOLERANCE:
                raise CaseError(case_id, f"prediction grid {geometry.shape} {geometry.orientation} does not match "
                                f"the reference's {reference_geometry.shape} {reference_geometry.orientation}",
                                predicted[case_id])
            result.metrics = case_metrics(prediction, reference, geometry.spacing)
        except CaseError as error:
            result.error = str(error)
        results.append(result)
    return results
