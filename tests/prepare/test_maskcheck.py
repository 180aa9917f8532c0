"""The tumour cut-off check on a brain mask, on a synthetic head: brain, a tumour at its edge (bright on FLAIR,
dark on T1), dark cerebrospinal fluid and skull, scalp fat (bright on FLAIR and brighter on T1)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bratsx.prepare.maskcheck import MAX_CUT_OFF_ML, check_cut_off, cut_off_ml
from bratsx.prepare.skullstrip import SkullStripError

SHAPE = (48, 48, 48)
SPACING = (2.0, 2.0, 2.0)  # a head of about 9 cm across in 48^3 voxels
CENTRE = np.array(SHAPE) // 2
TUMOUR_CENTRE = CENTRE + np.array([12, 0, 0])


def _distance(point) -> np.ndarray:
    return np.linalg.norm(np.indices(SHAPE) - np.asarray(point).reshape(3, 1, 1, 1), axis=0)


@pytest.fixture(scope="module")
def head() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FLAIR, T1, true brain): FLAIR / T1 brain 100 / 100, tumour reaching the brain's edge 200 / 70, CSF 20 / 10,
    skull 5 / 5, scalp fat 250 / 400."""
    radius = _distance(CENTRE)
    brain = radius <= 18
    flair, t1 = np.where(brain, 100.0, 0.0), np.where(brain, 100.0, 0.0)
    for shell, values in (((18, 19), (20.0, 10.0)), ((19, 21), (5.0, 5.0)), ((21, 23), (250.0, 400.0))):
        inside = (radius > shell[0]) & (radius <= shell[1])
        flair[inside], t1[inside] = values
    tumour = brain & (_distance(TUMOUR_CENTRE) <= 7)
    flair[tumour], t1[tumour] = 200.0, 70.0
    noise = np.random.default_rng(0).normal(0, 3, (2, *SHAPE))
    return ((flair + noise[0] * (flair > 0)).astype(np.float32), (t1 + noise[1] * (t1 > 0)).astype(np.float32),
            brain)


def test_a_correct_mask_cuts_off_nothing_despite_the_bright_scalp(head):
    flair, t1, brain = head
    found = cut_off_ml(flair, t1, brain, SPACING)
    assert found.cut_off_ml == 0.0 and found.bright_inside_ml > 5.0


def test_a_mask_cut_through_the_tumour_stops_the_case_in_one_line(head):
    flair, t1, brain = head
    cut = brain & (np.indices(SHAPE)[0] < TUMOUR_CENTRE[0])
    assert cut_off_ml(flair, t1, cut, SPACING).cut_off_ml > MAX_CUT_OFF_ML
    with pytest.raises(SkullStripError) as raised:
        check_cut_off("C1", flair, t1, cut, SPACING)
    message = str(raised.value)
    assert message.startswith("case C1:") and "cuts off" in message and "\n" not in message


def test_a_mask_a_little_tight_along_the_tumour_is_not_a_cut(head):
    flair, t1, brain = head
    tight = ndimage.binary_erosion(brain, iterations=1)  # 2 mm tight everywhere, tumour included
    assert cut_off_ml(flair, t1, tight, SPACING).cut_off_ml <= MAX_CUT_OFF_ML
    assert check_cut_off("C1", flair, t1, tight, SPACING).cut_off_ml <= MAX_CUT_OFF_ML


def test_a_thin_bright_rim_left_outside_a_tight_mask_is_no_lesion(head):
    flair, t1, brain = head
    rimmed = flair.copy()
    rimmed[brain & ~ndimage.binary_erosion(brain, iterations=2)] = 200.0  # a bright 4 mm rim along the edge
    tight = ndimage.binary_erosion(brain, iterations=1)
    assert cut_off_ml(rimmed, t1, tight, SPACING).cut_off_ml <= MAX_CUT_OFF_ML


def test_fat_bright_on_flair_and_t1_touching_a_tight_mask_is_not_lesion(head):
    flair, t1, brain = head
    fatty, fat_t1 = flair.copy(), t1.copy()
    outside = ~brain & (_distance(CENTRE) <= 23)
    fatty[outside], fat_t1[outside] = 250.0, 400.0  # no dark CSF or skull: fat right against the brain
    assert cut_off_ml(fatty, fat_t1, brain, SPACING).cut_off_ml == 0.0


def test_an_empty_mask_measures_nothing(head):
    flair, t1, _ = head
    assert cut_off_ml(flair, t1, np.zeros(SHAPE, bool), SPACING).cut_off_ml == 0.0
