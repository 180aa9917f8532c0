"""``bratsx infer INPUT --prepare``: raw scans become BraTS cases, and their segmentations go back to the patient.

The chain around the one batch runner: :func:`~bratsx.prepare.prepare_input` writes every case it can prepare
into ``OUT/prepared/<case id>/`` (atlas space, with its record and transforms); :func:`~bratsx.runtime.batch.run_batch`
segments those folders as any others, into ``OUT/<case id>.nii.gz``; :func:`native_segmentations` then maps
each segmented case back onto every native sequence grid (``OUT/native/``, with a DICOM-SEG for DICOM inputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import CaseError
from ..labels import LabelConvention
from ..runtime.infer import output_path
from ..runtime.records import CaseRecord, CaseStatus
from .native import NativeResult, segmentation_to_native

__all__ = ["NATIVE_FOLDER", "PREPARED_FOLDER", "native_segmentations"]

#: Where ``--prepare`` writes the prepared cases, inside the output folder.
PREPARED_FOLDER = "prepared"
#: Where the segmentations on each native grid go, inside the output folder.
NATIVE_FOLDER = "native"


def native_segmentations(records: Sequence[CaseRecord], out_dir: Path,
                         conventions: Mapping[str, LabelConvention]) -> dict[str, NativeResult | str]:
    """Map every segmented prepared case back onto its native sequence grids.

    Args:
        records: the batch's records (cases that failed or were skipped are passed over).
        out_dir: the batch's output folder, holding ``prepared/`` and the atlas-space segmentations.
        conventions: the label set each case's segmentation was written in.

    Returns:
        Per segmented case, what was written, or one line saying why it could not be (the others go on).
    """
    results: dict[str, NativeResult | str] = {}
    for record in records:
        if record.status != CaseStatus.OK:
            continue
        try:
            results[record.case_id] = segmentation_to_native(
                out_dir / PREPARED_FOLDER / record.case_id, output_path(out_dir, record.case_id),
                out_dir / NATIVE_FOLDER, conventions[record.case_id])
        except CaseError as error:
            results[record.case_id] = str(error)
    return results
