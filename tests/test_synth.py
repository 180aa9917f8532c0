import nibabel as nib
import numpy as np
import pytest

from bratsx.cases import Layout, discover_cases
from bratsx.errors import BratsxError
from bratsx.imageio import load_case
from bratsx.labels import LabelConvention, Tissue, convert_labels, regions_from_labels
from bratsx.synth import brats_affine, synthesize_case, write_synthetic_dataset

SHAPE = (64, 64, 48)


@pytest.fixture(scope="module")
def case():
    return synthesize_case(SHAPE, seed=3, index=1)


def test_same_seed_and_index_give_identical_cases(case):
    again = synthesize_case(SHAPE, seed=3, index=1)
    assert np.array_equal(case.image, again.image) and np.array_equal(case.labels, again.labels)


def test_other_seed_or_index_give_other_cases(case):
    assert not np.array_equal(case.labels, synthesize_case(SHAPE, seed=4, index=1).labels)
    assert not np.array_equal(case.labels, synthesize_case(SHAPE, seed=3, index=2).labels)


def test_storage_matches_brats(case):
    assert case.image.dtype == np.int16 and case.image.shape == (4, *SHAPE)
    assert nib.aff2axcodes(case.affine) == ("L", "P", "S")
    assert np.array_equal(case.affine, brats_affine(SHAPE))


def test_background_is_zero_and_the_brain_non_zero_in_every_modality(case):
    brain = case.image[0] != 0
    for channel in case.image:
        assert np.array_equal(channel != 0, brain)
    assert 0.15 < brain.mean() < 0.6
    assert not (case.labels[~brain]).any()  # tumour only inside the brain


def test_every_tumour_tissue_is_present(case):
    counts = np.bincount(case.labels.ravel(), minlength=4)
    assert all(counts[t] > 0 for t in (Tissue.EDEMA, Tissue.ENHANCING))
    assert set(np.unique(case.labels)) <= {0, 1, 2, 3}


def test_contrasts_are_consistent_with_the_labels(case):
    flair, t1, t1ce, t2 = (channel.astype(np.float64) for channel in case.image)
    brain = case.image[0] != 0
    healthy = brain & (case.labels == 0)
    edema = case.labels == Tissue.EDEMA
    enhancing = case.labels == Tissue.ENHANCING
    tumour = case.labels > 0

    def mean(volume, where):
        return volume[where].mean()

    assert mean(flair, edema) > 1.3 * mean(flair, healthy)  # FLAIR: edema bright
    assert mean(t2, edema) > 1.3 * mean(t2, healthy)  # T2: edema bright
    assert mean(t1ce, enhancing) > 1.3 * mean(t1ce, healthy)  # T1ce: enhancing rim bright
    assert mean(t1, tumour) < mean(t1, healthy)  # T1: tumour dark
    necrosis = case.labels == Tissue.NECROTIC_CORE
    if necrosis.any():
        assert mean(t1ce, necrosis) < 0.5 * mean(t1ce, enhancing)  # T1ce: necrosis dark


def test_tumour_regions_are_nested(case):
    wt, tc, et = regions_from_labels(case.labels, LabelConvention.BRATS2023)
    assert not (et & ~tc).any() and not (tc & ~wt).any()
    assert et.sum() < tc.sum() < wt.sum()


def test_tiny_shapes_are_refused():
    with pytest.raises(BratsxError, match="at least 16 voxels"):
        synthesize_case((8, 64, 64), seed=0)


@pytest.mark.parametrize("layout", list(Layout))
def test_written_dataset_is_discovered_and_loads_with_its_labels(tmp_path, layout):
    write_synthetic_dataset(tmp_path, cases=2, shape=(32, 32, 24), layout=layout, seed=5)
    cases = discover_cases(tmp_path)
    assert [c.layout for c in cases] == [layout, layout]
    loaded = load_case(cases[1])
    expected = synthesize_case((32, 32, 24), seed=5, index=2)
    assert np.array_equal(loaded.image, expected.image.transpose(0, 3, 2, 1).astype(np.float32))  # to (z, y, x)
    expected_labels = convert_labels(expected.labels.T, LabelConvention.BRATS2023, loaded.convention)
    assert np.array_equal(loaded.label, expected_labels)
    assert not list(tmp_path.rglob(".*"))  # no partial files left behind


def test_existing_cases_are_not_overwritten_unless_asked(tmp_path):
    write_synthetic_dataset(tmp_path, cases=1, shape=(32, 32, 24), seed=1)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.nii.gz")}
    with pytest.raises(BratsxError, match="already there.*--overwrite"):
        write_synthetic_dataset(tmp_path, cases=2, shape=(32, 32, 24), seed=2)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.nii.gz")} == before
    assert len(discover_cases(tmp_path)) == 1  # nothing of the refused run was written
    write_synthetic_dataset(tmp_path, cases=2, shape=(32, 32, 24), seed=2, overwrite=True)
    assert len(discover_cases(tmp_path)) == 2


def test_case_i_does_not_depend_on_how_many_cases_are_made(tmp_path):
    write_synthetic_dataset(tmp_path / "a", cases=1, shape=(32, 32, 24), seed=9)
    write_synthetic_dataset(tmp_path / "b", cases=3, shape=(32, 32, 24), seed=9)
    a, b = (load_case(discover_cases(tmp_path / x)[0]) for x in "ab")
    assert np.array_equal(a.image, b.image)
