import numpy as np
import pytest

from bratsx.labels import Region
from bratsx.metrics import dice, region_dice


@pytest.mark.parametrize(
    "prediction,reference,expected",
    [
        ([1, 1, 0, 0], [1, 0, 0, 0], 2 * 1 / 3),
        ([1, 1, 0, 0], [1, 1, 0, 0], 1.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 1.0),  # both empty: BraTS scores 1
        ([1, 0, 0, 0], [0, 0, 0, 0], 0.0),  # one empty
        ([0, 0, 0, 0], [0, 1, 1, 0], 0.0),
    ],
)
def test_dice_by_hand(prediction, reference, expected):
    assert dice(np.array(prediction), np.array(reference)) == pytest.approx(expected)


def test_region_dice_per_channel():
    prediction = np.array([[1, 1], [1, 0], [0, 0]], bool)
    reference = np.array([[1, 1], [0, 1], [0, 0]], bool)
    assert region_dice(prediction, reference) == {Region.WT: 1.0, Region.TC: 0.0, Region.ET: 1.0}


def test_sensitivity_specificity_and_volume_by_hand():
    from bratsx.metrics import sensitivity, specificity, volume_ml

    prediction = np.array([1, 1, 0, 0, 0, 0, 0, 1], bool)
    reference = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    assert sensitivity(prediction, reference) == pytest.approx(2 / 4)
    assert specificity(prediction, reference) == pytest.approx(3 / 4)
    assert volume_ml(reference, (1.0, 1.0, 2.0)) == pytest.approx(4 * 2 / 1000)


def points(*coordinates, shape=(10, 10, 10)):
    mask = np.zeros(shape, bool)
    for c in coordinates:
        mask[c] = True
    return mask


def test_hd95_is_the_distance_between_single_voxels_in_mm():
    from bratsx.metrics import hd95

    assert hd95(points((2, 2, 2)), points((2, 2, 5)), spacing=(1.0, 1.0, 2.0)) == pytest.approx(6.0)
    assert hd95(points((2, 2, 2)), points((2, 2, 2)), spacing=(1.0, 1.0, 1.0)) == 0.0


def test_hd95_ignores_the_worst_five_percent():
    from bratsx.metrics import hd95

    reference = np.zeros((40, 40, 40), bool)
    reference[5:35, 5:35, 5:35] = True
    prediction = reference.copy()
    prediction[0, 0, 0] = True  # one stray voxel far from the surface: under 5% of the surface
    assert hd95(prediction, reference, (1.0, 1.0, 1.0)) == pytest.approx(0.0)


def test_hd95_is_the_larger_directed_percentile():
    from bratsx.metrics import hd95

    reference = np.zeros((10, 10, 60), bool)
    reference[5, 5, 0:20] = True  # a line of 20 voxels
    prediction = reference.copy()
    prediction[5, 5, 20:40] = True  # the line, twice as long: its second half is 1..20 voxels away
    # prediction -> reference: surface voxels 20..39 at distances 1..20 of 40: the 95th percentile is 18.05;
    # reference -> prediction: all 0. Pooled distances would give 16.05 instead.
    assert hd95(prediction, reference, (1.0, 1.0, 1.0)) == pytest.approx(18.05)
    assert hd95(reference, prediction, (1.0, 1.0, 1.0)) == pytest.approx(18.05)


@pytest.mark.parametrize(
    "prediction,reference,expected_dice,expected_hd95",
    [
        (np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool), 1.0, 0.0),  # both empty
        (points((1, 1, 1), shape=(4, 4, 4)), np.zeros((4, 4, 4), bool), 0.0, 373.13),  # only prediction
        (np.zeros((4, 4, 4), bool), points((1, 1, 1), shape=(4, 4, 4)), 0.0, 373.13),  # only reference
    ],
)
def test_brats_rules_for_empty_masks(prediction, reference, expected_dice, expected_hd95):
    from bratsx.metrics import case_metrics

    regions = lambda m: np.stack([m, m, m])  # noqa: E731
    result = case_metrics(regions(prediction), regions(reference), (1.0, 1.0, 1.0))
    for region in ("WT", "TC", "ET"):
        assert result[f"dice_{region}"] == expected_dice
        assert result[f"hd95_{region}"] == pytest.approx(expected_hd95)
