import gzip
import tracemalloc

import nibabel as nib
import numpy as np
import pytest
from casefiles import SMALL_SHAPE, label_volume, modality_volume, save, write_folder_case, write_msd_case
from hostile import patch_header

from bratsx.cases import Layout, discover_cases
from bratsx.errors import CaseError, LabelError
from bratsx.imageio import inspect_case, load_case, save_nifti_atomic
from bratsx.labels import MODALITY_ORDER, LabelConvention, Modality
from bratsx.synth import brats_affine

CODES = [10, 20, 30, 40]  # modality_volume's value per channel: FLAIR, T1, T1ce, T2


def only_case(root):
    [case] = discover_cases(root)
    return case


def assert_channels_in_bratsx_order(image):
    assert image.dtype == np.float32
    assert image.shape == (4, *SMALL_SHAPE[::-1])  # canonical arrays are (z, y, x)
    assert [float(image[c].max()) for c in range(4)] == CODES


@pytest.mark.parametrize("layout", [Layout.BRATS2020, Layout.BRATS2023, Layout.PLAIN])
def test_folder_layouts_load_in_flair_t1_t1ce_t2_order(tmp_path, layout):
    labels = {Layout.BRATS2020: (1, 2, 4), Layout.BRATS2023: (1, 2, 3), Layout.PLAIN: (1, 2, 3)}[layout]
    write_folder_case(tmp_path, layout, "case_a", label_values=labels)
    loaded = load_case(only_case(tmp_path))
    assert_channels_in_bratsx_order(loaded.image)
    assert loaded.label.dtype == np.uint8
    assert sorted(np.unique(loaded.label)) == [0, *labels]


def test_msd_4d_image_loads_its_channels_in_order(tmp_path):
    write_msd_case(tmp_path, "BRATS_001")
    loaded = load_case(only_case(tmp_path))
    assert_channels_in_bratsx_order(loaded.image)
    assert loaded.convention is LabelConvention.MSD


@pytest.mark.parametrize("layout", [Layout.BRATS2020, Layout.MSD])
def test_a_case_found_for_a_models_channels_loads_them_in_the_models_order(tmp_path, layout):
    if layout is Layout.MSD:
        write_msd_case(tmp_path, "BRATS_001")
        channels, codes = ("t2", "flair"), [40, 10]
    else:
        folder = write_folder_case(tmp_path, layout, "case_a")
        adc = modality_volume(Modality.FLAIR)
        save(np.where(adc > 0, 77, 0).astype(np.int16), folder / "case_a_adc.nii.gz")
        channels, codes = ("t2", "adc", "t1"), [40, 77, 20]
    [case] = discover_cases(tmp_path, channels=channels)
    loaded = load_case(case)
    assert loaded.channels == channels
    assert [float(loaded.image[c].max()) for c in range(len(channels))] == codes


@pytest.mark.parametrize("values,expected", [
    ((1, 2), LabelConvention.BRATS2023),  # every adult glioma set reads core and edema alike
    ((1, 2, 3), LabelConvention.BRATS2023),
    ((1, 2, 3, 4), LabelConvention.BRATS2024),  # ET 3 beside 4: only the post-treatment set holds both
])
def test_plain_layout_reads_the_convention_from_the_values(tmp_path, values, expected):
    write_folder_case(tmp_path, Layout.PLAIN, "case_a", label_values=values)
    assert load_case(only_case(tmp_path)).convention is expected


def test_plain_layout_refuses_values_read_differently_and_reads_them_when_stated(tmp_path):
    # 4 is ET in BraTS 2018-2021 and RC in 2024: a plain case says neither, so the reference is refused in one line
    write_folder_case(tmp_path, Layout.PLAIN, "case_a", label_values=(1, 2, 4))
    case = only_case(tmp_path)
    with pytest.raises(LabelError, match=r"^case case_a, file seg\.nii\.gz: label values \[0, 1, 2, 4\] are "
                                         r"ambiguous .* choose the set with --labels brats2020\|brats2024$"):
        load_case(case)
    assert load_case(case, convention=LabelConvention.BRATS2020).convention is LabelConvention.BRATS2020


def test_file_scaling_is_applied_in_float32(brats2020_case):
    path = brats2020_case / f"{brats2020_case.name}_t2.nii.gz"
    image = nib.load(path)
    scaled = nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine)
    scaled.header.set_slope_inter(2.0, 5.0)
    nib.save(scaled, path)
    loaded = load_case(only_case(brats2020_case))
    assert loaded.image[3].max() == pytest.approx(40 * 2.0 + 5.0)
    assert loaded.image.dtype == np.float32


def test_uncompressed_nifti_loads_too(tmp_path):
    folder = tmp_path / "case_u"
    folder.mkdir()
    for modality in MODALITY_ORDER:
        save(modality_volume(modality), folder / f"{modality.value}.nii")
    assert_channels_in_bratsx_order(load_case(only_case(tmp_path)).image)


def test_loading_makes_no_float64_copy(tmp_path):
    shape = (64, 64, 48)
    write_folder_case(tmp_path, Layout.BRATS2020, "case_m", label_values=None, shape=shape)
    case = only_case(tmp_path)
    load_case(case)  # warm imports and caches
    tracemalloc.start()
    loaded = load_case(case)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # The float32 result plus the int16 buffers being read is about 1.5x the result; one float64
    # copy of even a single modality would push the peak past 1.75x.
    assert peak < 1.75 * loaded.image.nbytes


# --- every bad input gets a CaseError naming the case and the file -------------------------------


def replace_file(folder, suffix, volume, affine=None):
    path = next(folder.glob(f"*{suffix}.nii.gz"))
    save(volume, path, affine)
    return path


def assert_case_error(case, file_name, message):
    with pytest.raises(CaseError) as caught:
        load_case(case)
    text = str(caught.value)
    assert case.case_id in text
    assert file_name in text
    assert message in text
    return caught.value


def test_missing_modality(brats2020_case):
    (brats2020_case / f"{brats2020_case.name}_t2.nii.gz").unlink()
    assert_case_error(only_case(brats2020_case), brats2020_case.name, "missing T2 image")


def test_two_files_for_one_modality(brats2020_case):
    save(modality_volume(Modality.T1), brats2020_case / f"{brats2020_case.name}_t1.nii")
    assert_case_error(only_case(brats2020_case), f"{brats2020_case.name}_t1.nii", "two files for T1")


def test_shape_mismatch_between_modalities(brats2020_case):
    path = replace_file(brats2020_case, "_t1ce", modality_volume(Modality.T1CE, (20, 24, 15)))
    assert_case_error(only_case(brats2020_case), path.name, "shape (20, 24, 15) differs from FLAIR's (20, 24, 16)")


def test_affine_mismatch_beyond_tolerance(brats2020_case):
    affine = brats_affine(SMALL_SHAPE)
    affine[0, 3] += 0.5
    path = replace_file(brats2020_case, "_t2", modality_volume(Modality.T2), affine)
    assert_case_error(only_case(brats2020_case), path.name, "affine differs from FLAIR's by up to 0.5 mm")


def test_affine_difference_within_tolerance_is_accepted(brats2020_case):
    affine = brats_affine(SMALL_SHAPE)
    affine[0, 3] += 1e-5
    replace_file(brats2020_case, "_t2", modality_volume(Modality.T2), affine)
    assert_channels_in_bratsx_order(load_case(only_case(brats2020_case)).image)


def test_non_3d_image(brats2020_case):
    path = replace_file(brats2020_case, "_flair", np.ones((20, 24, 16, 2), dtype=np.int16))
    assert_case_error(only_case(brats2020_case), path.name, "expected a 3D image, got shape (20, 24, 16, 2)")


def test_trailing_singleton_axis_is_accepted(brats2020_case):
    replace_file(brats2020_case, "_flair", modality_volume(Modality.FLAIR)[..., None])
    assert_channels_in_bratsx_order(load_case(only_case(brats2020_case)).image)


def test_msd_image_without_four_channels(tmp_path):
    write_msd_case(tmp_path, "BRATS_002")
    path = tmp_path / "imagesTr" / "BRATS_002.nii.gz"
    save(np.ones((*SMALL_SHAPE, 3), dtype=np.int16), path)
    assert_case_error(only_case(tmp_path), path.name, "expected a 4D image with 4 channels")


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_nan_or_inf_voxels(brats2020_case, bad_value):
    volume = modality_volume(Modality.T1).astype(np.float32)
    volume[5, 5, 5] = bad_value
    path = replace_file(brats2020_case, "_t1", volume)
    assert_case_error(only_case(brats2020_case), path.name, "T1 has 1 NaN or infinite voxels")


def test_all_zero_modality(brats2020_case):
    path = replace_file(brats2020_case, "_t1ce", np.zeros(SMALL_SHAPE, dtype=np.int16))
    assert_case_error(only_case(brats2020_case), path.name, "T1CE is all zeros")


def test_corrupt_gzip(brats2020_case):
    path = brats2020_case / f"{brats2020_case.name}_flair.nii.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 20)
    assert_case_error(only_case(brats2020_case), path.name, "corrupt or truncated gzip data")


def test_truncated_gzip(brats2020_case):
    path = brats2020_case / f"{brats2020_case.name}_flair.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_case_error(only_case(brats2020_case), path.name, "corrupt or truncated gzip data")


def test_truncated_voxel_data(brats2020_case):
    path = brats2020_case / f"{brats2020_case.name}_t2.nii.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    assert_case_error(only_case(brats2020_case), path.name, "truncated")


def test_not_a_nifti_file(brats2020_case):
    path = brats2020_case / f"{brats2020_case.name}_t2.nii.gz"
    path.write_bytes(gzip.compress(b"this is not a NIfTI header" * 30))
    assert_case_error(only_case(brats2020_case), path.name, "not a NIfTI file")


def test_label_values_outside_the_convention(brats2020_case):
    path = replace_file(brats2020_case, "_seg", label_volume((1, 2, 3)))
    error = assert_case_error(only_case(brats2020_case), path.name, "label values [3] are not in the brats2020")
    assert error.path == path


def test_label_on_another_grid(brats2020_case):
    path = replace_file(brats2020_case, "_seg", label_volume((1, 2, 4), (20, 24, 15)))
    assert_case_error(only_case(brats2020_case), path.name, "differs from the images'")


def test_a_case_can_be_loaded_without_its_label(brats2020_case):
    replace_file(brats2020_case, "_seg", label_volume((7,)))
    loaded = load_case(only_case(brats2020_case), with_label=False)
    assert loaded.label is None


def test_inspect_reports_problems_without_raising(brats2020_case):
    replace_file(brats2020_case, "_t1ce", modality_volume(Modality.T1CE, (20, 24, 15)))
    replace_file(brats2020_case, "_t1", np.zeros(SMALL_SHAPE, dtype=np.int16))
    case = only_case(brats2020_case)
    headers_only = inspect_case(case)
    assert [p.problem for p in headers_only.problems] == ["shape (20, 24, 15) differs from FLAIR's (20, 24, 16)"]
    assert headers_only.geometry.shape == SMALL_SHAPE


def test_inspect_with_voxels_finds_data_problems(brats2020_case):
    replace_file(brats2020_case, "_t1", np.zeros(SMALL_SHAPE, dtype=np.int16))
    case = only_case(brats2020_case)
    assert inspect_case(case).problems == ()
    [problem] = inspect_case(case, read_voxels=True).problems
    assert "T1 is all zeros" in str(problem)


def test_atomic_save_leaves_no_partial_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "out.nii.gz"

    def failing_save(image, path):
        path.write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_nifti_atomic(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), target)
    assert list(tmp_path.iterdir()) == []


def test_a_zero_byte_file_is_called_empty(brats2020_case):
    path = brats2020_case / f"{brats2020_case.name}_t1.nii.gz"
    path.write_bytes(b"")
    assert_case_error(only_case(brats2020_case), path.name, "empty file (0 bytes)")


@pytest.mark.parametrize("fields,message", [
    ({"sform_code": 1, "qform_code": 0, "srow_x": 0, "srow_y": 0, "srow_z": 0},
     "no usable voxel-to-world geometry (sform: singular (all zeros, or a zero voxel size))"),
    ({"sform_code": 1, "qform_code": 0, "srow_x": [np.nan, 0, 0, 0]},
     "no usable voxel-to-world geometry (sform: NaN or infinite entries)"),
    ({"sform_code": 0, "qform_code": 1, "pixdim": [1, np.nan, 1, 1, 1, 1, 1, 1]},
     "no usable voxel-to-world geometry (qform: NaN or infinite entries)"),
    ({"sform_code": 0, "qform_code": 0, "pixdim": [1, 1, 1, np.nan, 1, 1, 1, 1]},
     "no usable voxel-to-world geometry (pixdim: NaN or infinite entries)"),
    ({"dim": [3, 20, -24, 16, 1, 1, 1, 1]}, "negative dimension in the header's shape (20, -24, 16)"),
])
def test_degenerate_geometry_is_one_case_error_naming_the_file(brats2020_case, fields, message):
    path = brats2020_case / f"{brats2020_case.name}_t1ce.nii.gz"
    patch_header(path, **fields)
    case = only_case(brats2020_case)
    error = assert_case_error(case, path.name, message)
    assert "\n" not in str(error)
    [problem] = inspect_case(case).problems  # bratsx cases reads headers only: the same line, no traceback
    assert str(problem) == str(error)


def test_an_unusable_sform_gives_way_to_a_usable_qform(brats2020_case):
    path = brats2020_case / f"{brats2020_case.name}_t2.nii.gz"
    reference = nib.load(path).affine
    patch_header(path, sform_code=1, srow_x=0, srow_y=0, srow_z=0)
    header = nib.load(path).header
    header.set_qform(reference, code=1)
    patch_header(path, qform_code=1, quatern_b=header["quatern_b"], quatern_c=header["quatern_c"],
                 quatern_d=header["quatern_d"], qoffset_x=header["qoffset_x"], qoffset_y=header["qoffset_y"],
                 qoffset_z=header["qoffset_z"], pixdim=header["pixdim"])
    loaded = load_case(only_case(brats2020_case))
    assert_channels_in_bratsx_order(loaded.image)
    assert np.abs(loaded.geometry.affine - reference).max() < 1e-5


def test_scaling_that_overflows_float32_is_refused(brats2020_case):
    path = brats2020_case / f"{brats2020_case.name}_t2.nii.gz"
    patch_header(path, scl_slope=1e38)
    assert_case_error(only_case(brats2020_case), path.name, "NaN or infinite voxels after the file's scaling")


@pytest.mark.parametrize("volume", [np.ones(SMALL_SHAPE, np.complex64), np.ones(SMALL_SHAPE, [("R", "u1"),
                                                                                              ("G", "u1"),
                                                                                              ("B", "u1")])])
def test_complex_and_rgb_voxels_are_refused(brats2020_case, volume):
    path = replace_file(brats2020_case, "_t1", volume)
    assert_case_error(only_case(brats2020_case), path.name, "unsupported voxel type")


@pytest.mark.parametrize("rename", [".nii.gz -> .nii", "gzip -> raw"])
def test_the_content_decides_compression_for_check_and_load_alike(brats2020_case, rename):
    path = brats2020_case / f"{brats2020_case.name}_t1.nii.gz"
    if rename == "gzip -> raw":
        path.write_bytes(gzip.decompress(path.read_bytes()))  # uncompressed data under a .nii.gz name
    else:
        path.rename(path.with_suffix(""))  # gzip data under a .nii name
    case = only_case(brats2020_case)
    assert inspect_case(case, read_voxels=True).problems == ()
    assert_channels_in_bratsx_order(load_case(case).image)


def test_a_bad_reference_is_a_label_error_raised_after_the_images_are_checked(brats2020_case):
    replace_file(brats2020_case, "_seg", label_volume((1, 2, 3)))
    case = only_case(brats2020_case)
    with pytest.raises(LabelError, match="label values"):
        load_case(case)
    assert load_case(case, with_label=False).label is None
    replace_file(brats2020_case, "_t1", np.zeros(SMALL_SHAPE, np.int16))
    with pytest.raises(CaseError) as caught:  # bad images come first: a LabelError means the images are fine
        load_case(case)
    assert not isinstance(caught.value, LabelError)


def test_inspect_reports_a_bad_reference_as_a_label_error(brats2020_case):
    replace_file(brats2020_case, "_seg", label_volume((1, 2, 4), (20, 24, 15)))
    [problem] = inspect_case(only_case(brats2020_case), read_voxels=True).problems
    assert isinstance(problem, LabelError) and "differs from the images' (20, 24, 16)" in str(problem)
