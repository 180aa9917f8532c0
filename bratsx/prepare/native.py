"""An atlas-space segmentation back on every native sequence grid, as NIfTI and (for DICOM inputs) DICOM-SEG.

Each native voxel takes the label of the atlas voxel its centre maps to, through the inverse of the
saved transforms (native -> reference: inverse rigid; reference -> atlas: inverse affine). This is
**nearest-neighbour on labels**: exact for the labels' values and cheap, but on 5 mm slices a voxel
takes the label at its centre rather than the majority of its slab (resampling the probabilities and
taking the argmax would be smoother; the runtime does not keep probabilities today).

NIfTI outputs from NIfTI inputs keep the input's own affine and header (data type set to uint8);
outputs from DICOM inputs carry the series' geometry as read by GDCM. Volumes per tissue and region
are counted on the native grid of each sequence, in mL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_path
from ..errors import CaseError
from ..imageio import save_nifti_atomic
from ..labels import LabelConvention, Tissue, regions_from_labels
from ..metrics import region_volumes_ml, volume_ml
from .ingest import Series, read_series
from .pipeline import PREPARE_FOLDER, RECORD_NAME

__all__ = ["NativeResult", "segmentation_to_native"]

#: Segment names and display colours (RGB) of the DICOM-SEG, as BraTS names the tissues.
SEGMENTS = {
    Tissue.NECROTIC_CORE: ("NCR", "Necrotic and non-enhancing tumour core", (255, 0, 0)),
    Tissue.EDEMA: ("ED", "Peritumoral edema", (0, 255, 0)),
    Tissue.ENHANCING: ("ET", "Enhancing tumour", (255, 255, 0)),
}


@dataclass(frozen=True)
class NativeResult:
    """What went back to the patient.

    Attributes:
        case_id: the case.
        segmentations: native-grid NIfTI per sequence.
        dicom_seg: the DICOM-SEG on the reference series, or ``None`` for NIfTI inputs.
        volumes_ml: per sequence, mL per tissue (NCR, ED, ET) and region (WT, TC, ET).
        volumes_file: the JSON file holding ``volumes_ml``.
    """

    case_id: str
    segmentations: dict[str, Path] = field(default_factory=dict)
    dicom_seg: Path | None = None
    volumes_ml: dict[str, dict[str, float]] = field(default_factory=dict)
    volumes_file: Path | None = None


def _volumes(labels: np.ndarray, convention: LabelConvention, spacing) -> dict[str, float]:
    """mL per tissue (NCR, ED, ET) and per region (``region WT``/``TC``/``ET``) of a label map."""
    values = convention.tissue_values
    volumes = {SEGMENTS[t][0]: round(volume_ml(labels == values[t], spacing), 3) for t in Tissue}
    regions = region_volumes_ml(regions_from_labels(labels, convention), spacing)
    volumes.update({f"region {name}": round(ml, 3) for name, ml in regions.items()})
    return volumes


def _native_grid(info: dict, case_id: str):
    series = Series(key=info["key"], label=info["label"], description=info["label"],
                    files=tuple(Path(p) for p in info["files"]))
    return series, read_series(series, case_id)


def _write_nifti(labels_xyz: np.ndarray, series: Series, native, path: Path) -> None:
    import nibabel as nib
    import SimpleITK as sitk

    if series.is_dicom:
        image = sitk.GetImageFromArray(labels_xyz.transpose(2, 1, 0).copy())
        image.CopyInformation(native)
        with atomic_path(path, suffix=".nii.gz") as temporary:
            sitk.WriteImage(image, str(temporary), useCompression=True)
        return
    source = nib.load(series.files[0])
    header = source.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1.0, 0.0)
    save_nifti_atomic(nib.Nifti1Image(labels_xyz, source.affine, header), path)


def _write_dicom_seg(labels_kji: np.ndarray, series: Series, convention: LabelConvention, path: Path) -> None:
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(p) for p in series.files]
    values = convention.tissue_values
    segment_map = np.zeros(labels_kji.shape, np.uint8)
    descriptions = []
    for number, tissue in enumerate(Tissue, start=1):
        segment_map[labels_kji == values[tissue]] = number
        name, meaning, rgb = SEGMENTS[tissue]
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=name,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm if tissue is not Tissue.EDEMA else codes.SCT.Edema,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name="bratsx", version=__version__, family=codes.cid7162.ArtificialIntelligence),
            display_color=hd.color.CIELabColor.from_rgb(*rgb),
        )
        description.SegmentDescription = meaning  # (0062,0006), shown by viewers beside the label
        descriptions.append(description)
    segmentation = hd.seg.Segmentation(
        source_images=sources, pixel_array=segment_map, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9901,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="bratsx", manufacturer_model_name="bratsx",
        software_versions=__version__, device_serial_number="none", series_description="bratsx tumour segmentation",
        omit_empty_frames=False,
    )
    with atomic_path(path, suffix=".dcm") as temporary:
        segmentation.save_as(temporary)


def segmentation_to_native(
    prepared: Path | str,
    segmentation: Path | str,
    out: Path | str,
    convention: LabelConvention = LabelConvention.BRATS2020,
) -> NativeResult:
    """Map an atlas-space segmentation of a prepared case back to every native sequence grid.

    Args:
        prepared: the case folder :func:`~bratsx.prepare.prepare_input` wrote (``OUT/<case id>``).
        segmentation: the label map on the atlas grid (what ``bratsx infer`` wrote for that case).
        out: folder for ``<case id>_<sequence>_native_seg.nii.gz``, ``<case id>_seg.dcm`` and
            ``<case id>_native_volumes.json``.
        convention: the labels' convention (bratsx writes prepared cases' labels as BraTS 2018-2021).

    Returns:
        The files written and the native volumes.

    Raises:
        CaseError: the record is missing, or the segmentation is not on the atlas grid.
    """
    import SimpleITK as sitk

    prepared, out = Path(prepared), Path(out)
    record_path = prepared / PREPARE_FOLDER / RECORD_NAME
    if not record_path.is_file():
        raise CaseError(prepared.name, "not a prepared case (no prepare/prepare.json); run bratsx prepare first",
                        prepared)
    record = json.loads(record_path.read_text())
    case_id = record["case_id"]
    labels = sitk.ReadImage(str(segmentation), sitk.sitkUInt8)
    atlas_grid = sitk.ReadImage(str(prepared / PREPARE_FOLDER / "brain_mask.nii.gz"))
    if labels.GetSize() != atlas_grid.GetSize():
        raise CaseError(case_id, f"segmentation of size {labels.GetSize()} is not on the atlas grid "
                                 f"{atlas_grid.GetSize()}", Path(segmentation))
    transforms = prepared / PREPARE_FOLDER
    # Saved transforms map fixed-image points to moving-image points: atlas -> reference, reference -> sequence.
    atlas_to_reference = sitk.ReadTransform(str(transforms / record["transforms"][record["reference"] + "_to_atlas"]))
    reference_points_to_atlas = atlas_to_reference.GetInverse()
    out.mkdir(parents=True, exist_ok=True)
    result = NativeResult(case_id)
    for name, info in record["sequences"].items():
        series, native = _native_grid(info, case_id)
        # Resample needs native points -> atlas points: inverse rigid first, then inverse affine (a
        # CompositeTransform applies its last transform first).
        if name == record["reference"]:
            native_points_to_atlas = reference_points_to_atlas
        else:
            reference_to_sequence = sitk.ReadTransform(str(transforms / record["transforms"][name]))
            native_points_to_atlas = sitk.CompositeTransform(
                [reference_points_to_atlas, reference_to_sequence.GetInverse()])
        moved = sitk.Resample(labels, native, native_points_to_atlas, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        labels_kji = sitk.GetArrayFromImage(moved)
        path = out / f"{case_id}_{name}_native_seg.nii.gz"
        _write_nifti(np.asfortranarray(labels_kji.transpose(2, 1, 0)), series, native, path)
        result.segmentations[name] = path
        result.volumes_ml[name] = _volumes(labels_kji, convention, native.GetSpacing())
        if name == record["reference"] and series.is_dicom:
            dicom_seg = out / f"{case_id}_seg.dcm"
            _write_dicom_seg(labels_kji, series, convention, dicom_seg)
            result = NativeResult(case_id, result.segmentations, dicom_seg, result.volumes_ml)
    volumes_file = out / f"{case_id}_native_volumes.json"
    with atomic_path(volumes_file, suffix=".json") as temporary:
        temporary.write_text(json.dumps({"case_id": case_id, "volumes_ml": result.volumes_ml}, indent=2) + "\n")
    return replace(result, volumes_file=volumes_file)

