"""The tumour cut-off check on a brain mask, on a synthetic head: brain, a FLAIR-bright tumour at its edge,
dark cerebrospinal fluid and skull, bright scalp."""

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
def head() -> tuple[np.ndarray, np.ndarray]:
    """(FLAIR, true brain): brain 100, tumour 200 reaching the brain's edge, CSF 20, skull 5, scalp 250."""
    radius = _distance(CENTRE)
    brain = radius <= 18
    flair = np.where(brain, 100.0, 0.0)
    flair[(radius > 18) & (radius <= 19)] = 20.0  # CSF
    flair[(radius > 19) & (radius <= 21)] = 5.0  # skull
    flair[(radius > 21) & (radius <= 23)] = 250.0  # scalp fat: bright, but not connected to the brain
    flair[brain & (_distance(TUMOUR_CENTRE) <= 7)] = 200.0
    noise = np.random.default_rng(0).normal(0, 3, SHAPE)
    return (flair + noise * (flair > 0)).astype(np.float32), brain


def test_a_correct_mask_cuts_off_nothing_despite_the_bright_scalp(head):
    flair, brain = head
    found = cut_off_ml(flair, brain, SPACING)
    assert found.cut_off_ml == 0.0 and found.bright_inside_ml > 5.0


def test_a_mask_cut_through_the_tumour_stops_the_case_in_one_line(head):
    flair, brain = head
    cut = brain & (np.indices(SHAPE)[0] < TUMOUR_CENTRE[0])
    assert cut_off_ml(flair, cut, SPACING).cut_off_ml > MAX_CUT_OFF_ML
    with pytest.raises(SkullStripError) as raised:
        check_cut_off("C1", flair, cut, SPACING)
    message = str(raised.value)
    assert message.startswith("case C1:") and "cuts off" in message and "\n" not in message


def test_a_mask_a_little_tight_along_the_tumour_is_not_a_cut(head):
    flair, brain = head
    tight = ndimage.binary_erosion(brain, iterations=1)  # 2 mm tight everywhere, tumour included
    assert cut_off_ml(flair, tight, SPACING).cut_off_ml <= MAX_CUT_OFF_ML
    assert check_cut_off("C1", flair, tight, SPACING).cut_off_ml <= MAX_CUT_OFF_ML


def test_a_thin_bright_rim_left_outside_a_tight_mask_is_no_lesion(head):
    flair, brain = head
    rimmed = flair.copy()
    rimmed[brain & ~ndimage.binary_erosion(brain, iterations=2)] = 200.0  # a bright 4 mm rim along the edge
    tight = ndimage.binary_erosion(brain, iterations=1)
    assert cut_off_ml(rimmed, tight, SPACING).cut_off_ml <= MAX_CUT_OFF_ML


def test_an_empty_mask_measures_nothing(head):
    flair, _ = head
    assert cut_off_ml(flair, np.zeros(SHAPE, bool), SPACING).cut_off_ml == 0.0
