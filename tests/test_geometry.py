"""Orientation: every input comes to the canonical (z, y, x) of BraTS and every output goes back exactly."""

import nibabel as nib
import numpy as np
import pytest
from casefiles import save

from bratsx.cases import discover_cases
from bratsx.geometry import CANONICAL_ORIENTATION, Geometry, affine_problem
from bratsx.imageio import load_case, write_label_map
from bratsx.labels import MODALITY_ORDER

SHAPE = (12, 14, 10)
SPACING = (0.9, 1.1, 2.0)


def lps_phantom() -> np.ndarray:
    """An asymmetric volume, so any wrong flip or transpose changes it."""
    return np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE) % 97 + 1


def lps_affine() -> np.ndarray:
    affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
    affine[:3, 3] = (5.0, 20.0, -3.0)
    return affine


def ras_version(volume, affine):
    """The same anatomy stored with R,A,S voxel axes: flip the first two axes and fix the affine."""
    flipped = volume[::-1, ::-1, :]
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = volume.shape[0] - 1, volume.shape[1] - 1
    return np.ascontiguousarray(flipped), affine @ flip


def oblique_version(volume, affine):
    """Axes permuted (S, L, P storage order) and the world rotated 12 degrees about the z axis."""
    permuted = np.ascontiguousarray(np.transpose(volume, (2, 0, 1)))
    permute = np.zeros((4, 4))
    permute[0, 1] = permute[1, 2] = permute[2, 0] = permute[3, 3] = 1.0
    angle = np.deg2rad(12)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return permuted, rotation @ affine @ permute


VARIANTS = {
    "LPS": lambda v, a: (v, a),
    "RAS": ras_version,
    "oblique": oblique_version,
}


def write_case(folder, volume, affine):
    folder.mkdir()
    for index, modality in enumerate(MODALITY_ORDER):
        save((volume + index).astype(np.int16), folder / f"{modality.value}.nii.gz", affine)
    return folder


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_orientation_loads_to_the_same_canonical_array(tmp_path, variant):
    volume, affine = VARIANTS[variant](lps_phantom(), lps_affine())
    write_case(tmp_path / "case", volume, affine)
    [case] = discover_cases(tmp_path)
    loaded = load_case(case)
    assert loaded.image.shape == (4, *SHAPE[::-1])
    assert np.array_equal(loaded.image[0], lps_phantom().T.astype(np.float32))
    assert loaded.geometry.canonical_shape == SHAPE[::-1]
    assert loaded.geometry.canonical_spacing == pytest.approx(SPACING[::-1])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_written_label_map_reproduces_the_input_geometry_exactly(tmp_path, variant):
    volume, affine = VARIANTS[variant](lps_phantom(), lps_affine())
    folder = write_case(tmp_path / "case", volume, affine)
    [case] = discover_cases(tmp_path)
    loaded = load_case(case)
    canonical_labels = (loaded.image[0] % 5).astype(np.uint8)  # anything tied to the voxels
    out = write_label_map(canonical_labels, loaded.geometry, tmp_path / "pred.nii.gz")

    source, written = nib.load(folder / "flair.nii.gz"), nib.load(out)
    assert written.shape == source.shape
    assert np.array_equal(written.affine, source.affine)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(source.affine)
    assert written.header.get_zooms() == source.header.get_zooms()
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (
        int(source.header["qform_code"]), int(source.header["sform_code"]))
    assert written.get_data_dtype() == np.uint8
    # Voxel for voxel, the labels sit where the input's intensities were.
    assert np.array_equal(np.asanyarray(written.dataobj), (np.asanyarray(source.dataobj) % 5).astype(np.uint8))


def test_oblique_orientation_is_reported_by_its_nearest_axes():
    volume, affine = oblique_version(lps_phantom(), lps_affine())
    geometry = Geometry(volume.shape, affine, nib.Nifti1Header())
    assert geometry.orientation == "SLP"
    assert geometry.spacing == pytest.approx((SPACING[2], SPACING[0], SPACING[1]))
    assert CANONICAL_ORIENTATION == "SPL"  # BraTS's L,P,S storage read as a (z, y, x) array


def test_write_refuses_a_label_map_of_the_wrong_shape(tmp_path):
    geometry = Geometry(SHAPE, lps_affine(), nib.Nifti1Header())
    with pytest.raises(ValueError, match="does not match"):
        write_label_map(np.zeros((3, 3, 3), np.uint8), geometry, tmp_path / "x.nii.gz")


@pytest.mark.parametrize("affine,problem", [
    (lps_affine(), None),
    (np.zeros((4, 4)), "singular (all zeros, or a zero voxel size)"),
    (np.diag([1.0, 0.0, 1.0, 1.0]), "singular (all zeros, or a zero voxel size)"),
    (np.diag([1.0, np.nan, 1.0, 1.0]), "NaN or infinite entries"),
    (np.diag([1.0, 1.0, np.inf, 1.0]), "NaN or infinite entries"),
    (np.eye(3), "shape (3, 3), not 4x4"),
])
def test_affine_problem_names_what_no_orientation_can_come_from(affine, problem):
    assert affine_problem(affine) == problem
