import pytest
import torch

from bratsx.labels import OutputMode
from bratsx.trainer.loss import DeepSupervisionLoss, SegmentationLoss, region_targets


def labels_volume():
    labels = torch.zeros(2, 8, 8, 8, dtype=torch.uint8)
    labels[:, 2:6, 2:6, 2:6] = 2  # edema
    labels[:, 3:5, 3:5, 3:5] = 3  # enhancing
    labels[:, 3, 3, 3] = 1  # necrosis
    return labels


def test_region_targets_nest_wt_tc_et():
    targets = region_targets(labels_volume())
    wt, tc, et = targets[:, 0], targets[:, 1], targets[:, 2]
    assert wt.sum() == 2 * 64 and tc.sum() == 2 * 8 and et.sum() == 2 * 7
    assert bool(((tc <= wt) & (et <= tc)).all())


@pytest.mark.parametrize("mode", list(OutputMode))
def test_a_perfect_prediction_has_near_zero_loss_and_a_wrong_one_does_not(mode):
    labels = labels_volume()
    if mode is OutputMode.REGIONS:
        perfect = (region_targets(labels) * 2 - 1) * 30
    else:
        perfect = torch.nn.functional.one_hot(labels.long(), 4).movedim(-1, 1).float() * 60 - 30
    loss = SegmentationLoss(mode)
    assert float(loss(perfect, labels)) < 1e-3
    assert float(loss(-perfect, labels)) > 1.0


def test_deep_supervision_weights_halve_and_sum_to_one():
    assert DeepSupervisionLoss(SegmentationLoss(), 3).weights == pytest.approx([4 / 7, 2 / 7, 1 / 7])


def test_deep_supervision_compares_coarse_outputs_with_subsampled_labels():
    labels = labels_volume()
    perfect_full = (region_targets(labels) * 2 - 1) * 30
    perfect_half = (region_targets(labels[:, ::2, ::2, ::2]) * 2 - 1) * 30
    loss = DeepSupervisionLoss(SegmentationLoss(), 2)
    assert float(loss([perfect_full, perfect_half], labels)) < 1e-3
