"""``bratsx evaluate``: BraTS metrics for segmentations made by anything, against references.

Predictions and references are matched by case id (:func:`segmentation_files`). Each case's label
set is given, stated by the references' dataset.json, or read from the reference's values where they
are unambiguous for the sets its id could belong to; its challenge's regions are scored. Both files
must lie on the same grid. Every case of either folder is accounted for: scored, failed, missing (a reference without a
prediction), unreferenced (a prediction without a reference) or ambiguous (two candidate files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cases import MSD_LABEL_FOLDER, nifti_stem
from ..datasetjson import label_set_from_dataset_json
from ..errors import BratsxError, CaseError
from ..imageio import AFFINE_TOLERANCE, label_convention, prediction_convention, read_label_file
from ..labels import LabelConvention, candidate_sets, regions_from_labels, unexpected_values
from ..scoring import score_label_maps
from .records import CaseRecord, CaseStatus

__all__ = ["SegmentationFiles", "evaluate_directories", "read_regions", "segmentation_files"]

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


def _stated_set(references: Path) -> LabelConvention | None:
    """The label set the references' ``dataset.json`` states (in the folder, or beside ``labelsTr``)."""
    return label_set_from_dataset_json(references) or (
        label_set_from_dataset_json(references.parent) if references.name == MSD_LABEL_FOLDER else None)


def read_regions(path: Path, case_id: str, convention: LabelConvention | None = None):
    """A segmentation file's WT/TC/ET masks (as stored, not reoriented) and its geometry.

    Raises:
        CaseError: the file cannot be read or its labels fit no convention.
    """
    data, geometry = read_label_file(path, case_id)
    return regions_from_labels(data, label_convention(data, case_id, path, convention)), geometry


def _score(case_id: str, predicted: Path, reference: Path, stated: LabelConvention | None,
           lesion_wise: bool) -> CaseRecord:
    """Score one case in the reference's label set: stated, else read from its values among the id's candidates.

    The prediction is read in the same set when its values fit it; a prediction written in another set
    (BraTS 2023 values against 2018-2021 references) is read in its own, and only the WT, TC and ET
    regions every set shares are scored; its values are read among the sets of the id and the adult glioma sets.
    """
    record = CaseRecord(case_id, CaseStatus.OK, output=str(predicted))
    try:
        truth_data, reference_geometry = read_label_file(reference, case_id)
        prediction_data, geometry = read_label_file(predicted, case_id)
        if geometry.shape != reference_geometry.shape or np.abs(
                geometry.affine - reference_geometry.affine).max() > AFFINE_TOLERANCE:
            raise CaseError(case_id, f"prediction grid {geometry.shape} {geometry.orientation} does not match "
                            f"the reference's {reference_geometry.shape} {reference_geometry.orientation}", predicted)
        scored = label_convention(truth_data, case_id, reference, stated)
        predicted_in = scored if stated or not unexpected_values(prediction_data, scored) else \
            prediction_convention(prediction_data, case_id, predicted, None, candidate_sets(case_id))
        record.label_set = scored.value
        record.metrics = score_label_maps(prediction_data, predicted_in, truth_data, scored, geometry.spacing,
                                          lesion_wise=lesion_wise)
    except CaseError as error:
        record.status, record.error = CaseStatus.FAILED, str(error)
    return record


def evaluate_directories(
    predictions: Path, references: Path, convention: LabelConvention | None = None, lesion_wise: bool = False
) -> list[CaseRecord]:
    """One record per case id found in either folder, sorted by id.

    Each case is scored on the regions its label set evaluates (``convention``, else the one the
    references' ``dataset.json`` states, else read per case from the reference's values among the sets
    its id could belong to; an ambiguous map fails that case in one line naming the candidates). With
    ``lesion_wise``, the lesion-wise Dice and HD95 are added per region with the set's parameters.

    Raises:
        BratsxError: when no case id appears in both folders, or the references' dataset.json cannot be read.
    """
    convention = convention or _stated_set(Path(references))
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
