import nibabel as nib
import numpy as np
import pytest
from casefiles import real_data

from bratsx.cases import discover_cases
from bratsx.contract import ModelContract
from bratsx.runtime.infer import InferOptions, infer_cases, output_path, tta_predictor
from bratsx.synth import write_synthetic_dataset

PATCH = (16, 16, 16)
CONTRACT = ModelContract(PATCH, "regions", {"features": [4, 8]})


class ThresholdModel:
    """A stand-in network: 'tumour' where FLAIR is bright, flip-equivariant by construction."""

    name, device, precision = "toy", "cpu", "fp32"

    def __init__(self):
        self.calls = 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        flair = batch[:, 0]
        probability = 1.0 / (1.0 + np.exp(-4.0 * (flair - 1.5)))
        return np.stack([probability] * 3, axis=1).astype(np.float32)


@pytest.fixture
def cases_dir(tmp_path):
    write_synthetic_dataset(tmp_path / "cases", cases=3, shape=(40, 40, 32), seed=4)
    return tmp_path / "cases"


def test_outputs_are_written_per_case_with_metrics(cases_dir, tmp_path):
    results = infer_cases(discover_cases(cases_dir), [ThresholdModel()], CONTRACT, tmp_path / "out")
    assert [r.error for r in results] == [None] * 3
    for r in results:
        assert r.output == output_path(tmp_path / "out", r.case_id) and r.output.exists()
        assert set(r.seconds) == {"load", "preprocess", "inference", "postprocess", "write"}
        assert 0.0 <= r.metrics["dice_WT"] <= 1.0 and "hd95_ET" in r.metrics


def test_a_rerun_skips_finished_cases(cases_dir, tmp_path):
    cases = discover_cases(cases_dir)
    infer_cases(cases[:2], [ThresholdModel()], CONTRACT, tmp_path / "out")
    model = ThresholdModel()
    results = infer_cases(cases, [model], CONTRACT, tmp_path / "out")
    assert [r.skipped for r in results] == [True, True, False]
    again = infer_cases(cases, [ThresholdModel()], CONTRACT, tmp_path / "out", InferOptions(overwrite=True))
    assert not any(r.skipped for r in again)


def test_a_bad_case_does_not_stop_the_batch(cases_dir, tmp_path):
    broken = sorted(cases_dir.iterdir())[1]
    next(broken.glob("*_t2.nii.gz")).write_bytes(b"\x1f\x8b broken")
    results = infer_cases(discover_cases(cases_dir), [ThresholdModel()], CONTRACT, tmp_path / "out")
    assert [r.error is None for r in results] == [True, False, True]
    assert "corrupt or truncated gzip" in results[1].error and broken.name in results[1].error
    assert not output_path(tmp_path / "out", broken.name).exists()


def test_a_backend_error_on_one_case_does_not_stop_the_batch(cases_dir, tmp_path):
    class FailsOnce(ThresholdModel):
        def run(self, batch):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("out of device memory")
            return super().run(batch)

    results = infer_cases(discover_cases(cases_dir), [FailsOnce()], CONTRACT, tmp_path / "out")
    assert "RuntimeError: out of device memory" in results[0].error
    assert [r.error is None for r in results[1:]] == [True, True]


def test_tta_with_a_flip_equivariant_model_equals_no_tta():
    tiles = np.random.default_rng(0).normal(1.5, 1.0, (2, 4, *PATCH)).astype(np.float32)
    model = ThresholdModel()
    plain = tta_predictor([model.run], tta=False)(tiles)
    mirrored = tta_predictor([model.run], tta=True)(tiles)
    np.testing.assert_allclose(mirrored, plain, atol=1e-6)
    assert model.calls == 2  # the 8 mirrorings travel in one batch


def test_an_ensemble_averages_its_models():
    tiles = np.zeros((1, 4, *PATCH), np.float32)
    one = lambda t: np.ones((len(t), 3, *PATCH), np.float32)  # noqa: E731
    zero = lambda t: np.zeros((len(t), 3, *PATCH), np.float32)  # noqa: E731
    np.testing.assert_allclose(tta_predictor([one, zero], tta=False)(tiles), 0.5)


@pytest.mark.real_data
@pytest.mark.parametrize("case_id", ["BraTS-GLI-00001-000", "aurora-met-01"])
def test_real_cases_come_back_in_their_own_geometry(case_id, tmp_path):
    case = next(c for c in discover_cases(real_data("real")) if c.case_id == case_id)
    contract = ModelContract((64, 64, 64), "regions", {})
    [result] = infer_cases([case], [ThresholdModel()], contract, tmp_path, InferOptions(overlap=0.0, sw_batch=4))
    written, source = nib.load(result.output), nib.load(case.images[next(iter(case.images))])
    assert written.shape == source.shape
    assert np.array_equal(written.affine, source.affine)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(source.affine)
    assert written.header.get_zooms() == source.header.get_zooms()
