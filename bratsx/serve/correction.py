"""A reviewer's correction of a prediction, painted in the viewer, saved as a new segmentation beside it.

The page sends the painted label map as a NIfTI file in the prediction's own grid. It is accepted
only when it is that: a 3D map of the prediction's shape and affine, holding only the label values of
the prediction's convention (and 0). It is written, atomically, to ``PREDICTIONS/corrected/<case>.nii.gz``
with the prediction's header (uint8, no scaling): the prediction itself is never touched. Its region
volumes are recomputed from the saved map, as ``bratsx infer`` computes a prediction's.
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..atomic import write_bytes_atomic
from ..errors import BratsxError
from ..labels import REGION_ORDER, LabelConvention, regions_from_labels
from ..metrics import volume_ml

__all__ = ["CORRECTED_FOLDER", "Correction", "corrected_path", "save_correction"]

#: Where corrections go, inside the predictions folder.
CORRECTED_FOLDER = "corrected"
#: Room for a NIfTI header and its extensions beyond the voxels, when bounding what a correction may expand to.
_HEADER_ROOM = 1 << 20


@dataclass(frozen=True)
class Correction:
    """A saved correction: its file (relative to the predictions folder) and its volume per region (mL)."""

    path: str
    volumes_ml: dict[str, float]

    def volumes_text(self) -> str:
        """The volumes as one ``qc.csv`` cell: ``WT=12.345;TC=...``."""
        return ";".join(f"{region}={ml:.3f}" for region, ml in self.volumes_ml.items())


def corrected_path(predictions_dir: Path, case_id: str) -> Path:
    """Where a case's correction goes (beside the predictions, never over one)."""
    return predictions_dir / CORRECTED_FOLDER / f"{case_id}.nii.gz"


def _decompressed(content: bytes, limit: int, case_id: str) -> bytes:
    """``content`` un-gzipped when it is gzip, refusing more than ``limit`` bytes (no decompression bomb)."""
    if content[:2] != b"\x1f\x8b":
        return content
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(content, limit + 1)
    except zlib.error as error:
        raise BratsxError(f"case {case_id}: the correction is not a readable .nii.gz ({error})") from None
    if len(data) > limit:
        raise BratsxError(f"case {case_id}: the correction expands to more than the prediction's grid can hold")
    return data


def save_correction(content: bytes, prediction: Path, convention: LabelConvention, predictions_dir: Path,
                    case_id: str) -> Correction:
    """Check a painted label map against its prediction and save it beside the predictions.

    Args:
        content: the NIfTI file the page sent (``.nii`` or ``.nii.gz`` bytes).
        prediction: the prediction it corrects.
        convention: the prediction's label convention (the values a correction may hold).
        predictions_dir: the run's output folder.
        case_id: the case.

    Returns:
        The saved file (relative to ``predictions_dir``) and its region volumes in mL.

    Raises:
        BratsxError: not a NIfTI file, another grid than the prediction's, or values outside the convention
            (one line each); nothing is written then.
    """
    original = nib.load(prediction)
    shape = original.shape[:3]
    data = _decompressed(content, int(np.prod(shape)) * 8 + _HEADER_ROOM, case_id)
    try:
        painted = nib.Nifti1Image.from_stream(io.BytesIO(data))
        labels = np.asarray(painted.dataobj)
    except Exception as error:  # nibabel raises many kinds for a damaged file
        raise BratsxError(f"case {case_id}: the correction is not a readable NIfTI file ({error})") from None
    labels = labels.reshape(labels.shape[:3]) if labels.ndim > 3 and labels.size == np.prod(shape) else labels
    if labels.shape != shape or not np.allclose(painted.affine, original.affine, atol=1e-3):
        raise BratsxError(f"case {case_id}: the correction's grid ({labels.shape}) is not the prediction's "
                          f"({shape}, same affine); paint on the prediction as shown")
    allowed = {0, *convention.tissue_values.values()}
    found = {float(v) for v in np.unique(labels)}
    if not found <= allowed:
        raise BratsxError(f"case {case_id}: the correction holds label values {sorted(found - allowed)} that "
                          f"{convention.value} does not use (it uses {sorted(allowed)})")
    labels = labels.astype(np.uint8)
    header = original.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1.0, 0.0)
    image = nib.Nifti1Image(labels, original.affine, header)
    target = corrected_path(predictions_dir, case_id)
    try:
        target.parent.mkdir(exist_ok=True)
        write_bytes_atomic(target, gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))
    except OSError as error:
        raise BratsxError(f"case {case_id}: cannot write {target} ({error.strerror or error})") from None
    spacing = header.get_zooms()[:3]
    regions = regions_from_labels(labels, convention)
    volumes = {region.value: volume_ml(regions[i], spacing) for i, region in enumerate(REGION_ORDER)}
    return Correction(str(target.relative_to(predictions_dir)), volumes)
