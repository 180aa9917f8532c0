"""Tiles, mirrorings and models are averaged as logits, as nnU-Net and MONAI average them."""

import numpy as np

from bratsx.labels import OutputMode
from bratsx.runtime.segment import LOGIT_CAP, logits_from_probabilities, probabilities_from_logits, tile_predictor


def test_sigmoid_outputs_go_back_to_their_logits():
    logits = np.linspace(-12, 12, 25, dtype=np.float32).reshape(1, 25)
    probabilities = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(logits_from_probabilities(probabilities, OutputMode.REGIONS), logits, atol=2e-2)
    np.testing.assert_allclose(probabilities_from_logits(logits.copy(), OutputMode.REGIONS), probabilities, rtol=1e-6)


def test_softmax_outputs_give_the_same_probabilities_back():
    logits = np.random.default_rng(0).normal(scale=4, size=(4, 10)).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=0)
    back = probabilities_from_logits(logits_from_probabilities(probabilities, OutputMode.LABELS), OutputMode.LABELS)
    np.testing.assert_allclose(back, probabilities, rtol=1e-4, atol=1e-7)


def test_saturated_outputs_are_capped_alike_on_both_sides():
    got = logits_from_probabilities(np.array([1.0, 0.0, 1e-20], dtype=np.float32), OutputMode.REGIONS)
    np.testing.assert_allclose(got, [LOGIT_CAP, -LOGIT_CAP, -LOGIT_CAP], rtol=1e-6)


class _Constant:
    """A backend answering the same probability everywhere."""

    precision = "fp32"

    def __init__(self, probability: float) -> None:
        self.probability = probability

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.full((len(batch), 3, *batch.shape[2:]), self.probability, dtype=np.float32)


def test_models_are_averaged_as_logits():
    predict = tile_predictor([_Constant(0.9), _Constant(0.2)], tta=False)
    out = predict(np.zeros((1, 4, 2, 2, 2), np.float32))
    np.testing.assert_allclose(out, (np.log(0.9 / 0.1) + np.log(0.2 / 0.8)) / 2, rtol=1e-5)
    predict = tile_predictor([_Constant(0.999), _Constant(0.2), _Constant(0.2)], tta=False)
    assert (predict(np.zeros((1, 4, 2, 2, 2), np.float32)) > 0).all()  # where the mean probability is 0.466


class _Logits(_Constant):
    """A backend of a model file that returns logits (an imported model's ``outputs="logits"``)."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.full((len(batch), 3, *batch.shape[2:]), self.probability, dtype=np.float32)


def test_logit_outputs_are_averaged_raw_beyond_the_sigmoid_cap():
    predict = tile_predictor([_Logits(40.0), _Logits(-20.0)], tta=False, activated=False)
    np.testing.assert_allclose(predict(np.zeros((1, 4, 2, 2, 2), np.float32)), 10.0)  # capped, both would give 0
    saturated = tile_predictor([_Constant(1 / (1 + np.exp(-40.0))), _Constant(1 / (1 + np.exp(20.0)))], tta=False)
    assert abs(float(saturated(np.zeros((1, 4, 2, 2, 2), np.float32)).max())) < 0.5  # what the cap costs


def test_extreme_logits_give_saturated_probabilities_without_overflow():
    logits = np.array([[-500.0, -90.0, 0.0, 90.0, 500.0]], dtype=np.float32)
    with np.errstate(over="raise"):
        got = probabilities_from_logits(logits, OutputMode.REGIONS)
    np.testing.assert_allclose(got, [[0, 0, 0.5, 1, 1]], rtol=0, atol=1e-30)
