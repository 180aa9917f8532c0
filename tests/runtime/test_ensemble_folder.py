"""An ensemble model folder runs as one backend that averages its members' logits."""

from __future__ import annotations

import numpy as np

from bratsx.labels import OutputMode
from bratsx.runtime.backends import BackendBase
from bratsx.runtime.ensemble import AveragedBackend


class _Constant(BackendBase):
    """Returns the sigmoid of a fixed logit everywhere, and records being closed."""

    def __init__(self, logit: float) -> None:
        self.logit, self.closed = logit, False

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.full((len(batch), 3, *batch.shape[2:]), 1 / (1 + np.exp(-self.logit)), np.float32)

    def close(self) -> None:
        self.closed = True


def test_members_logits_are_averaged_and_the_activation_applied_once():
    members = [_Constant(4.0), _Constant(-1.0), _Constant(0.5)]
    averaged = AveragedBackend(members, OutputMode.REGIONS)
    out = averaged.run(np.zeros((2, 4, 8, 8, 8), np.float32))
    assert out.shape == (2, 3, 8, 8, 8)
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-(4.0 - 1.0 + 0.5) / 3)), rtol=1e-5)
    averaged.close()
    assert all(m.closed for m in members)


class _RawLogits(_Constant):
    """A member whose model file returns its logits (``outputs="logits"``)."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.full((len(batch), 3, *batch.shape[2:]), self.logit, np.float32)


def test_members_returning_logits_give_their_mean_logits():
    averaged = AveragedBackend([_RawLogits(30.0), _RawLogits(-10.0)], OutputMode.REGIONS, activated=False)
    np.testing.assert_allclose(averaged.run(np.zeros((1, 4, 4, 4, 4), np.float32)), 10.0)


def test_models_taking_other_input_channels_cannot_be_an_ensemble():
    from dataclasses import replace

    from bratsx.contract import ModelContract, ensemble_differences

    brats = ModelContract(patch_size=(16, 16, 16), output_mode=OutputMode.REGIONS, network={})
    assert ensemble_differences([brats, replace(brats)]) == []
    with_adc = replace(brats, modality_order=("t1ce", "adc"))
    assert ensemble_differences([brats, with_adc]) == ["input channels"]
    assert ensemble_differences([brats, replace(with_adc, patch_size=(8, 8, 8))]) == ["patch size", "input channels"]
