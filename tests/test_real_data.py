"""Real BraTS volumes from ../shared/data (skipped in a user's clone, where that folder is absent)."""

import nibabel as nib
import numpy as np
import pytest
from casefiles import real_data

from bratsx.cases import Layout, discover_cases
from bratsx.imageio import load_case, write_label_map
from bratsx.labels import MODALITY_ORDER, LabelConvention

pytestmark = pytest.mark.real_data

# Which file is which modality, from the data's README (t2f = FLAIR, t1n = T1, t1c = T1ce, t2w = T2).
REAL_CASES = {
    "BraTS-GLI-00001-000": (Layout.BRATS2023, "LPS", ["-t2f", "-t1n", "-t1c", "-t2w"]),
    "aurora-met-01": (Layout.PLAIN, "RAS", ["flair", "t1", "t1c", "t2"]),
}


def lps_array(path):
    """A file's voxels as a canonical (z, y, x) array of L,P,S axes, via nibabel's own reorientation."""
    ras = nib.as_closest_canonical(nib.load(path))
    return np.asanyarray(ras.dataobj)[::-1, ::-1, :].T.astype(np.float32)


@pytest.mark.parametrize("case_id", list(REAL_CASES))
def test_real_cases_load_with_the_right_modality_mapping(case_id, tmp_path):
    layout, orientation, names = REAL_CASES[case_id]
    cases = {c.case_id: c for c in discover_cases(real_data("real"))}
    case = cases[case_id]
    assert case.layout is layout
    loaded = load_case(case)
    assert loaded.geometry.orientation == orientation
    assert loaded.image.shape == (4, 155, 240, 240)
    for channel, (modality, name) in enumerate(zip(MODALITY_ORDER, names)):
        assert name in case.images[modality].name
        assert np.array_equal(loaded.image[channel], lps_array(case.images[modality]))

    out = write_label_map((loaded.image[0] > 0).astype(np.uint8), loaded.geometry, tmp_path / "mask.nii.gz")
    written, source = nib.load(out), nib.load(case.images[MODALITY_ORDER[0]])
    assert written.shape == source.shape and np.array_equal(written.affine, source.affine)
    assert np.array_equal(np.asanyarray(written.dataobj) > 0, np.asanyarray(source.dataobj) != 0)


def test_real_brats2018_case_loads_with_its_expert_labels():
    root = real_data("brats2018")
    case = discover_cases(root)[0]
    assert case.layout is Layout.BRATS2020
    loaded = load_case(case)
    assert loaded.convention is LabelConvention.BRATS2020
    assert set(np.unique(loaded.label)) <= {0, 1, 2, 4} and (loaded.label == 4).any()
