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
