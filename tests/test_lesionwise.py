"""BraTS 2023 lesion-wise metrics on hand-made volumes where every number is worked out by hand.

Defaults are the glioma parameters: 26-connected components, reference dilated 3 times with the
18-connected element (a lesion reaches 3 voxels further along an axis), lesions of <= 50 mm3 not
counted, 374 mm per missed lesion and per false positive. Lesions are 4x4x4 cubes (64 voxels).
"""

import numpy as np
import pytest

from bratsx.errors import BratsxError
from bratsx.lesionwise import LESION_HD95_PENALTY, LesionRule, LesionScores, lesion_scores, lesion_wise_metrics

SHAPE = (12, 12, 40)
ISO = (1.0, 1.0, 1.0)


def blocks(*corners, size=(4, 4, 4)):
    """A mask with one block of ``size`` voxels at each corner (lowest index along each axis)."""
    mask = np.zeros(SHAPE, bool)
    for z, y, x in corners:
        mask[z:z + size[0], y:y + size[1], x:x + size[2]] = True
    return mask


def test_penalty_is_the_reference_value():
    assert LESION_HD95_PENALTY == 374.0


# Hand computations for the HD95 values below (bratsx.metrics.hd95: 95th percentile of the pooled
# surface distances of both directions; a 4x4x4 cube has 56 surface voxels, a 4x4x2 slab 32).
# * slab = half the cube (axis 0 layers 0-1): slab->cube 28 zeros + 4 ones (the slab voxels over the
#   cube's interior); cube->slab: layers 0-1 0 (28), layer 2 1 (12), layer 3 2 (16). Pooled 88
#   values: 56 zeros, 16 ones, 16 twos; index 0.95*87 = 82.65 lies among the twos: 2 mm.
# * two cubes 6 voxels apart along x, the first one found: 112 zeros, then the second cube's layers
#   at 7 (16), 8 (12), 9 (12), 10 (16) mm; index 0.95*167 = 158.65 lies among the tens: 10 mm.
CASES = {
    "one lesion found exactly": (blocks((2, 2, 2)), blocks((2, 2, 2)), ISO, LesionScores(1.0, 0.0, 1, 0, 0)),
    # Dice 2*32/(32+64) = 2/3
    "one lesion half found": (
        blocks((2, 2, 2), size=(2, 4, 4)), blocks((2, 2, 2)), ISO, LesionScores(2 / 3, 2.0, 1, 0, 0)),
    # along axis 0 voxels are 2 mm: every distance doubles, Dice does not change
    "anisotropic spacing doubles the HD95": (
        blocks((2, 2, 2), size=(2, 4, 4)), blocks((2, 2, 2)), (2.0, 1.0, 1.0), LesionScores(2 / 3, 4.0, 1, 0, 0)),
    # gap of 6 voxels (x 6-11): the dilations end at x 8 and start at x 9, they touch: one lesion of 128 voxels,
    # Dice 2*64/(64+128) = 2/3
    "two cubes merged by dilation count once": (
        blocks((2, 2, 2)), blocks((2, 2, 2), (2, 2, 12)), ISO, LesionScores(2 / 3, 10.0, 1, 0, 0)),
    # gap of 7 voxels (x 6-12): the dilations end at x 8 and start at x 10, x 9 stays clear: two lesions, one
    # missed: Dice (1 + 0) / 2, HD95 (0 + 374) / 2
    "two cubes one voxel further apart stay two, one missed": (
        blocks((2, 2, 2)), blocks((2, 2, 2), (2, 2, 13)), ISO, LesionScores(0.5, 187.0, 1, 1, 0)),
    "two distant lesions, one missed": (
        blocks((2, 2, 2)), blocks((2, 2, 2), (2, 2, 30)), ISO, LesionScores(0.5, 187.0, 1, 1, 0)),
    # a blob beyond the dilated lesion: Dice (1 + 0) / 2, HD95 (0 + 374) / 2
    "false-positive component": (
        blocks((2, 2, 2), (2, 2, 30)), blocks((2, 2, 2)), ISO, LesionScores(0.5, 187.0, 1, 0, 1)),
    # a voxel 3 voxels from the cube touches its dilation: matched, not a false positive. Dice
    # 2*64/(65+64); its one distance of 3 mm is 1 of 113 pooled values, under the 95th percentile
    "component inside the dilation is matched, not a false positive": (
        blocks((2, 2, 2)) | blocks((3, 3, 8), size=(1, 1, 1)), blocks((2, 2, 2)), ISO,
        LesionScores(128 / 129, 0.0, 1, 0, 0)),
    # 3x3x3 = 27 mm3 <= 50: neither counted as missed nor, when predicted, as a false positive
    "small lesion missed is ignored": (
        blocks((2, 2, 2)), blocks((2, 2, 2)) | blocks((2, 2, 30), size=(3, 3, 3)), ISO,
        LesionScores(1.0, 0.0, 1, 0, 0)),
    "small lesion found is not a false positive": (
        blocks((2, 2, 2)) | blocks((2, 2, 30), size=(3, 3, 3)),
        blocks((2, 2, 2)) | blocks((2, 2, 30), size=(3, 3, 3)), ISO, LesionScores(1.0, 0.0, 1, 0, 0)),
    # exactly 50 voxels is not counted (the reference drops volume <= 50): nothing left, Dice 1, HD95 0
    "lesion of exactly 50 mm3 is ignored": (
        np.zeros(SHAPE, bool), blocks((2, 2, 2), size=(2, 5, 5)), ISO, LesionScores(1.0, 0.0, 0, 0, 0)),
    # the threshold is in mm3: the same 50 voxels at 2 mm along axis 0 are 100 mm3 and count (missed)
    "threshold is a volume in mm3": (
        np.zeros(SHAPE, bool), blocks((2, 2, 2), size=(2, 5, 5)), (2.0, 1.0, 1.0),
        LesionScores(0.0, 374.0, 0, 1, 0)),
    "both empty": (np.zeros(SHAPE, bool), np.zeros(SHAPE, bool), ISO, LesionScores(1.0, 0.0, 0, 0, 0)),
    "prediction empty, lesion present": (
        np.zeros(SHAPE, bool), blocks((2, 2, 2)), ISO, LesionScores(0.0, 374.0, 0, 1, 0)),
    "reference empty, two components predicted": (
        blocks((2, 2, 2), (2, 2, 30)), np.zeros(SHAPE, bool), ISO, LesionScores(0.0, 374.0, 0, 0, 2)),
}


@pytest.mark.parametrize("prediction,reference,spacing,expected", CASES.values(), ids=CASES.keys())
def test_lesion_scores_by_hand(prediction, reference, spacing, expected):
    scores = lesion_scores(prediction, reference, spacing)
    assert (scores.true_positives, scores.false_negatives, scores.false_positives) == (
        expected.true_positives, expected.false_negatives, expected.false_positives)
    assert scores.dice == pytest.approx(expected.dice, abs=1e-12)
    assert scores.hd95 == pytest.approx(expected.hd95, abs=1e-12)


def test_components_touching_only_at_a_corner_are_one_component():
    # two cubes meeting at one corner are one 26-connected component: one false positive, not two
    assert lesion_scores(blocks((2, 2, 2), (6, 6, 6)), np.zeros(SHAPE, bool), ISO) == LesionScores(0.0, 374.0, 0, 0, 1)


def test_smaller_dilation_keeps_close_lesions_apart():
    # with 1 dilation the 6-voxel gap is not bridged: two lesions, the second missed
    prediction, reference = blocks((2, 2, 2)), blocks((2, 2, 2), (2, 2, 12))
    scores = lesion_scores(prediction, reference, ISO, LesionRule(dilation_iterations=1))
    assert scores == LesionScores(0.5, 187.0, 1, 1, 0)


def test_lesion_wise_metrics_keys_follow_region_order():
    empty, cube = np.zeros(SHAPE, bool), blocks((2, 2, 2))
    prediction = np.stack([cube, empty, cube])  # WT found, TC missed, ET a false positive
    reference = np.stack([cube, cube, empty])
    assert lesion_wise_metrics(prediction, reference, ISO) == {
        "lesion_dice_WT": 1.0, "lesion_hd95_WT": 0.0, "lesions_tp_WT": 1, "lesions_fn_WT": 0, "lesions_fp_WT": 0,
        "lesion_dice_TC": 0.0, "lesion_hd95_TC": 374.0, "lesions_tp_TC": 0, "lesions_fn_TC": 1, "lesions_fp_TC": 0,
        "lesion_dice_ET": 0.0, "lesion_hd95_ET": 374.0, "lesions_tp_ET": 0, "lesions_fn_ET": 0, "lesions_fp_ET": 1,
    }


@pytest.mark.parametrize("prediction_shape,reference_shape", [((3, 4, 4, 4), (3, 4, 4, 5)), ((2, 4, 4, 4),) * 2,
                                                              ((4, 4, 4),) * 2])
def test_lesion_wise_metrics_rejects_wrong_shapes(prediction_shape, reference_shape):
    with pytest.raises(BratsxError, match="region masks"):
        lesion_wise_metrics(np.zeros(prediction_shape, bool), np.zeros(reference_shape, bool), ISO)
