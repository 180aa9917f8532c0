"""The real raw case (four sequences on three grids, 5.5 mm slices, skull on) prepared and mapped back exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("SimpleITK")
pytest.importorskip("nilearn")

from casefiles import real_data

from bratsx.prepare import PrepareOptions, prepare_input, segmentation_to_native

pytestmark = [pytest.mark.slow, pytest.mark.real_data]


def test_raw_case_prepared_and_back_in_each_native_geometry(tmp_path, deepbet_cache):
    import nibabel as nib
    import SimpleITK as sitk

    [result] = prepare_input(real_data("raw"), tmp_path / "prepared", PrepareOptions(cache=deepbet_cache))
    assert not result.error, result.error
    record = json.loads((result.folder / "prepare" / "prepare.json").read_text())
    assert [r["sequence"] for r in record["identification"]] == ["flair", "t1ce", "t2", "t1"]  # file order
    assert 1000 <= record["brain_ml"] <= 2000
    for quality in record["registration"].values():
        assert quality["mi_after"] > quality["mi_before"]
    assert set(record["pictures"]) == {"flair_on_atlas.png", "t1_on_atlas.png", "t1ce_on_atlas.png",
                                       "t2_on_atlas.png", "brain_mask.png"}
    # The brain mask as a stand-in segmentation (edema everywhere in the brain): the geometry is the point.
    mask = sitk.ReadImage(str(result.folder / "prepare" / "brain_mask.nii.gz"))
    segmentation = tmp_path / "seg.nii.gz"
    sitk.WriteImage(sitk.Cast(mask * 2, sitk.sitkUInt8), str(segmentation))
    native = segmentation_to_native(result.folder, segmentation, tmp_path / "native")
    for name, info in record["sequences"].items():
        given, written = nib.load(info["files"][0]), nib.load(native.segmentations[name])
        assert written.shape == given.shape
        np.testing.assert_array_equal(written.affine, given.affine)
        assert 1000 <= native.volumes_ml[name]["ED"] <= 2000  # the brain, measured on the native grid
    assert native.dicom_seg is None  # NIfTI input: no DICOM to reference


#: The raw case's series as a scanner would describe them (TCGA-FG-6692's descriptions; typical SE timings).
RAW_SERIES = {
    "_fla.nii.gz": ("MRHR FLAIR AX", 110.0, 9000.0, 2500.0, ""),
    "_t1.nii.gz": ("T1 AX", 12.0, 500.0, None, ""),
    "_t1c.nii.gz": ("MRHR T1 AX POST GAD", 17.0, 600.0, None, "MAGNEVIST"),
    "_t2.nii.gz": ("MRHR T2 AX", 91.0, 4000.0, None, ""),
}


def corners(image) -> np.ndarray:
    """The physical positions (mm) of an image's eight corner voxel centres."""
    sx, sy, sz = (size - 1 for size in image.GetSize())
    return np.array([image.TransformIndexToPhysicalPoint((i, j, k)) for i in (0, sx) for j in (0, sy) for k in (0, sz)])


def test_raw_case_as_dicom_round_trip_and_dicom_seg(tmp_path, deepbet_cache):
    """The raw case written as DICOM (oblique, 5.5 mm): identified from headers alone, prepared, and the
    segmentation back on each series' grid and as a DICOM-SEG referencing the T1ce series."""
    import highdicom as hd
    import SimpleITK as sitk
    from pydicom.uid import generate_uid
    from rawscans import write_nifti_as_series

    study_uid, frame_uid, sources, uids = generate_uid(), generate_uid(), {}, {}
    for number, path in enumerate(sorted(real_data("raw").glob("*/*.nii.gz")), start=2):
        suffix = next(s for s in RAW_SERIES if path.name.endswith(s))
        description, te, tr, ti, contrast = RAW_SERIES[suffix]
        uids[suffix] = write_nifti_as_series(path, tmp_path / "dicom" / f"s{number}", study_uid=study_uid,
                                             frame_uid=frame_uid, number=number, description=description, te=te,
                                             tr=tr, ti=ti, contrast=contrast, patient_id="TCGA-FG-6692")
        sources[suffix] = path
    [result] = prepare_input(tmp_path / "dicom", tmp_path / "prepared", PrepareOptions(cache=deepbet_cache))
    assert not result.error, result.error
    keys = {name: info["key"] for name, info in result.record["sequences"].items()}
    assert keys == {"flair": uids["_fla.nii.gz"], "t1": uids["_t1.nii.gz"], "t1ce": uids["_t1c.nii.gz"],
                    "t2": uids["_t2.nii.gz"]}
    mask = sitk.ReadImage(str(result.folder / "prepare" / "brain_mask.nii.gz"))
    segmentation = tmp_path / "seg.nii.gz"
    sitk.WriteImage(sitk.Cast(mask * 2, sitk.sitkUInt8), str(segmentation))
    native = segmentation_to_native(result.folder, segmentation, tmp_path / "native")
    names = {"flair": "_fla.nii.gz", "t1": "_t1.nii.gz", "t1ce": "_t1c.nii.gz", "t2": "_t2.nii.gz"}
    for name, suffix in names.items():
        # The same voxel centres in space (DICOM orders slices along the normal, the NIfTI may run the other way).
        original = sitk.ReadImage(str(sources[suffix]))
        written = sitk.ReadImage(str(native.segmentations[name]))
        assert written.GetSize() == original.GetSize()
        ours, theirs = corners(written), corners(original)
        assert max(np.linalg.norm(theirs - point, axis=1).min() for point in ours) < 0.05
    seg = hd.seg.segread(native.dicom_seg)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uids["_t1c.nii.gz"]
    assert int(seg.NumberOfFrames) == 3 * 26
    assert 1000 <= native.volumes_ml["t1ce"]["ED"] <= 2000
