"""Registration recovers known transforms (mean displacement < 1.5 mm) and refuses one that cannot converge."""

from __future__ import annotations

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from casefiles import real_data
from rawscans import synthetic_volumes

from bratsx.labels import Modality
from bratsx.prepare.register import RegistrationError, affine_to_atlas, rigid_to_reference

#: The issue's bar for a recovered alignment.
MAX_MEAN_DISPLACEMENT_MM = 1.5


def image(volume: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    """A SimpleITK image of an (x, y, z) array."""
    result = sitk.GetImageFromArray(np.ascontiguousarray(volume.transpose(2, 1, 0)).astype(np.float32))
    result.SetSpacing(spacing)
    result.SetOrigin(origin)
    return result


def centre(of) -> tuple[float, ...]:
    return of.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in of.GetSize()])


def random_rigid(rng, at, max_degrees=15.0, max_shift=20.0):
    transform = sitk.Euler3DTransform()
    transform.SetCenter(at)
    transform.SetRotation(*np.deg2rad(rng.uniform(-max_degrees, max_degrees, 3)))
    transform.SetTranslation(rng.uniform(-max_shift, max_shift, 3).tolist())
    return transform


def random_affine(rng, at):
    rigid = random_rigid(rng, at)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(at)
    scale_shear = np.eye(3) + rng.uniform(-0.08, 0.08, (3, 3))
    affine.SetMatrix((np.asarray(rigid.GetMatrix()).reshape(3, 3) @ scale_shear).ravel().tolist())
    affine.SetTranslation(rigid.GetTranslation())
    return affine


def moved_onto_thick_slices(source, truth, slice_mm: float):
    """``source`` seen through ``truth`` (fixed -> moving points) on a grid of ``slice_mm`` slices."""
    size = source.GetSize()
    grid = sitk.Image([size[0], size[1], int(size[2] / slice_mm)], sitk.sitkFloat32)
    grid.SetSpacing((1.0, 1.0, slice_mm))
    grid.SetOrigin(source.GetOrigin())
    return sitk.Resample(source, grid, truth.GetInverse(), sitk.sitkLinear, 0.0)


def mean_displacement(found, truth, fixed, mask: np.ndarray) -> float:
    """Mean distance (mm) between where the found and the true transform send the brain's voxels."""
    points = np.argwhere(mask)[::7]
    distances = [np.linalg.norm(np.subtract(found.TransformPoint(p), truth.TransformPoint(p)))
                 for p in (fixed.TransformIndexToPhysicalPoint([int(i) for i in index]) for index in points)]
    return float(np.mean(distances))


@pytest.mark.parametrize("seed", [0, 1])
def test_rigid_recovers_a_random_rigid_on_thick_slices(seed):
    volumes, _ = synthetic_volumes(seed)
    fixed, other = image(volumes[Modality.T1CE]), image(volumes[Modality.T2])
    truth = random_rigid(np.random.default_rng(seed), centre(fixed))
    moving = moved_onto_thick_slices(other, truth, slice_mm=3.0)
    found = rigid_to_reference("syn", "t2", fixed, moving)
    assert found.mi_after > found.mi_before
    assert mean_displacement(found.transform, truth, fixed, volumes[Modality.T1CE] > 0) < MAX_MEAN_DISPLACEMENT_MM


def test_affine_recovers_a_random_affine():
    volumes, _ = synthetic_volumes(3)
    atlas = image(volumes[Modality.T1])
    truth = random_affine(np.random.default_rng(3), centre(atlas))
    moving = moved_onto_thick_slices(atlas, truth, slice_mm=1.0)
    found = affine_to_atlas("syn", atlas, moving, sitk.Cast(atlas > 0, sitk.sitkUInt8))
    assert mean_displacement(found.transform, truth, atlas, volumes[Modality.T1] > 0) < MAX_MEAN_DISPLACEMENT_MM


def test_no_overlap_stops_with_one_line():
    volumes, _ = synthetic_volumes(0)
    fixed = image(volumes[Modality.T1CE])
    far = image(volumes[Modality.T2], origin=(2000.0, 0.0, 0.0))  # two metres away: nothing to align
    with pytest.raises(RegistrationError) as caught:
        rigid_to_reference("syn", "t2 to t1ce", fixed, far)
    assert "\n" not in str(caught.value) and "case syn: t2 to t1ce: registration" in str(caught.value)


@pytest.mark.slow
@pytest.mark.real_data
def test_real_brats_case_rigid_and_affine_round_trip():
    """A BraTS case moved by a random rigid (to 5 mm slices) and a random affine comes back within 1.5 mm,
    and its tumour regions moved there and back keep Dice >= 0.9."""
    folder = real_data("brats2018") / "Brats18_2013_20_1"
    fixed = sitk.ReadImage(str(folder / "Brats18_2013_20_1_t1ce.nii.gz"), sitk.sitkFloat32)
    t2 = sitk.ReadImage(str(folder / "Brats18_2013_20_1_t2.nii.gz"), sitk.sitkFloat32)
    labels = sitk.ReadImage(str(folder / "Brats18_2013_20_1_seg.nii.gz"), sitk.sitkUInt8)
    brain = sitk.GetArrayFromImage(fixed).transpose(2, 1, 0) > 0
    rng = np.random.default_rng(24)
    truth = random_rigid(rng, centre(fixed))
    moving = moved_onto_thick_slices(t2, truth, slice_mm=5.0)
    found = rigid_to_reference("brats", "t2", fixed, moving)
    assert mean_displacement(found.transform, truth, fixed, brain) < MAX_MEAN_DISPLACEMENT_MM
    truth = random_affine(rng, centre(fixed))
    moving = moved_onto_thick_slices(fixed, truth, slice_mm=1.0)
    found = affine_to_atlas("brats", fixed, moving, sitk.Cast(fixed > 0, sitk.sitkUInt8))
    assert mean_displacement(found.transform, truth, fixed, brain) < MAX_MEAN_DISPLACEMENT_MM
    there = sitk.Resample(labels, moving, truth.GetInverse(), sitk.sitkNearestNeighbor, 0)
    back = sitk.GetArrayFromImage(sitk.Resample(there, fixed, found.transform, sitk.sitkNearestNeighbor, 0))
    reference = sitk.GetArrayFromImage(labels)
    for values in ((1, 2, 4), (1, 4), (4,)):  # WT, TC, ET
        a, b = np.isin(reference, values), np.isin(back, values)
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.9
