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
