from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from casefiles import real_data
from standins import run_here

from bratsx.cases import discover_cases
from bratsx.contract import ModelContract
from bratsx.labels import OutputMode
from bratsx.runtime.backends import BackendBase
from bratsx.runtime.infer import InferOptions, output_path
from bratsx.runtime.records import read_records
from bratsx.runtime.segment import STAGE_PARTS, SegmentOptions, probabilities_from_logits, tile_predictor
from bratsx.synth import write_synthetic_dataset

PATCH = (16, 16, 16)
CONTRACT = ModelContract(PATCH, "regions", {"features": [4, 8]})


class ThresholdModel(BackendBase):
    """A stand-in network: 'tumour' where FLAIR is bright, flip-equivariant by construction."""

    name = "toy"

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
    results = run_here(discover_cases(cases_dir), [ThresholdModel()], CONTRACT, tmp_path / "out")
    assert [r.status for r in results] == ["ok"] * 3
    for r in results:
        assert (tmp_path / "out" / r.output) == output_path(tmp_path / "out", r.case_id)
        assert output_path(tmp_path / "out", r.case_id).exists()
        parts = {f"{stage}.{part}" for stage, names in STAGE_PARTS.items() for part in names}
        assert set(r.seconds) == {"load", "preprocess", "inference", "postprocess", "write"} | parts
        for stage, names in STAGE_PARTS.items():  # the parts of a stage add up to it
            assert sum(r.seconds[f"{stage}.{part}"] for part in names) == pytest.approx(r.seconds[stage])
            assert all(r.seconds[f"{stage}.{part}"] >= 0 for part in names)
        assert 0 < r.seconds["inference.network"]
        assert 0.0 <= r.metrics["dice_WT"] <= 1.0 and "hd95_ET" in r.metrics
    assert set(read_records(tmp_path / "out")) == {r.case_id for r in results}


def test_a_resumed_run_reports_what_an_uninterrupted_run_does(cases_dir, tmp_path):
    cases = discover_cases(cases_dir)
    whole = run_here(cases, [ThresholdModel()], CONTRACT, tmp_path / "whole")
    run_here(cases[:2], [ThresholdModel()], CONTRACT, tmp_path / "out")
    resumed = run_here(cases, [ThresholdModel()], CONTRACT, tmp_path / "out")
    assert [r.note for r in resumed] == ["reused", "reused", None]
    assert [r.metrics for r in resumed] == [r.metrics for r in whole]
    again = run_here(cases, [ThresholdModel()], CONTRACT, tmp_path / "out", InferOptions(overwrite=True))
    assert [r.note for r in again] == ["overwritten"] * 3


def test_a_changed_input_or_model_makes_a_case_stale(cases_dir, tmp_path):
    cases = discover_cases(cases_dir)
    run_here(cases, [ThresholdModel()], CONTRACT, tmp_path / "out", model_identity={"sha256": "a"})
    flair = next(Path(cases_dir, cases[0].case_id).glob("*_flair.nii.gz"))
    flair.write_bytes(flair.read_bytes())  # same bytes, new modification time
    redone = run_here(cases, [ThresholdModel()], CONTRACT, tmp_path / "out", model_identity={"sha256": "a"})
    assert [r.note for r in redone] == ["stale: input changed", "reused", "reused"]
    other_model = run_here(cases, [ThresholdModel()], CONTRACT, tmp_path / "out", model_identity={"sha256": "b"})
    assert {r.note for r in other_model} == {"stale: model changed"}


def test_a_bad_case_does_not_stop_the_batch(cases_dir, tmp_path):
    broken = sorted(cases_dir.iterdir())[1]
    next(broken.glob("*_t2.nii.gz")).write_bytes(b"\x1f\x8b broken")
    results = run_here(discover_cases(cases_dir), [ThresholdModel()], CONTRACT, tmp_path / "out")
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert "corrupt or truncated gzip" in results[1].error and broken.name in results[1].error
    assert not output_path(tmp_path / "out", broken.name).exists()


def test_a_backend_error_on_one_case_does_not_stop_the_batch(cases_dir, tmp_path):
    class FailsOnce(ThresholdModel):
        def run(self, batch):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("out of device memory")
            return super().run(batch)

    results = run_here(discover_cases(cases_dir), [FailsOnce()], CONTRACT, tmp_path / "out")
    assert "RuntimeError: out of device memory" in results[0].error
    assert [r.status for r in results[1:]] == ["ok", "ok"]


def test_tta_with_a_flip_equivariant_model_equals_no_tta():
    tiles = np.random.default_rng(0).normal(1.5, 1.0, (2, 4, *PATCH)).astype(np.float32)
    model = ThresholdModel()
    plain = tile_predictor([model], tta=False)(tiles)
    mirrored = tile_predictor([model], tta=True)(tiles)
    np.testing.assert_allclose(mirrored, plain, atol=1e-6)
    assert model.calls == 2  # the 8 mirrorings travel in one batch


def test_an_ensemble_averages_its_models():
    class Constant(BackendBase):
        def __init__(self, value: float) -> None:
            self.value = value

        def run(self, tiles):
            return np.full((len(tiles), 3, *PATCH), self.value, np.float32)

    tiles = np.zeros((1, 4, *PATCH), np.float32)
    logits = tile_predictor([Constant(1.0), Constant(0.0)], tta=False)(tiles)
    np.testing.assert_allclose(probabilities_from_logits(logits[0], OutputMode.REGIONS), 0.5)  # certainties cancel


@pytest.mark.real_data
@pytest.mark.parametrize("case_id", ["BraTS-GLI-00001-000", "aurora-met-01"])
def test_real_cases_come_back_in_their_own_geometry(case_id, tmp_path):
    case = next(c for c in discover_cases(real_data("real")) if c.case_id == case_id)
    contract = ModelContract((64, 64, 64), "regions", {})
    [result] = run_here([case], [ThresholdModel()], contract, tmp_path, segment=SegmentOptions(overlap=0.0, sw_batch=4))
    written, source = nib.load(tmp_path / result.output), nib.load(case.images[next(iter(case.images))])
    assert written.shape == source.shape
    assert np.array_equal(written.affine, source.affine)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(source.affine)
    assert written.header.get_zooms() == source.header.get_zooms()


def test_an_output_folder_that_would_replace_inputs_is_refused_before_any_work(tmp_path):
    from bratsx.errors import BratsxError

    write_synthetic_dataset(tmp_path / "msd", cases=2, shape=(40, 40, 32), layout="msd", seed=1)
    cases = discover_cases(tmp_path / "msd")
    before = {p: p.read_bytes() for p in (tmp_path / "msd").rglob("*.nii.gz")}
    model = ThresholdModel()
    for target in ("labelsTr", "imagesTr"):
        with pytest.raises(BratsxError, match="would replace an input"):
            run_here(cases, [model], CONTRACT, tmp_path / "msd" / target, InferOptions(overwrite=True))
    assert model.calls == 0
    assert {p: p.read_bytes() for p in (tmp_path / "msd").rglob("*.nii.gz")} == before


def test_an_unwritable_output_folder_is_refused_before_any_work(cases_dir, tmp_path):
    from bratsx.errors import BratsxError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    model = ThresholdModel()
    with pytest.raises(BratsxError, match="cannot write there"):
        run_here(discover_cases(cases_dir), [model], CONTRACT, blocker / "out")
    assert model.calls == 0


def test_a_bad_reference_does_not_stop_the_segmentation(cases_dir, tmp_path):
    case = discover_cases(cases_dir)[0]
    seg = next(Path(cases_dir, case.case_id).glob("*_seg.nii.gz"))
    image = nib.load(seg)
    nib.save(nib.Nifti1Image(np.full(image.shape, 7, np.uint8), image.affine), seg)
    [result] = run_here([case], [ThresholdModel()], CONTRACT, tmp_path / "out")
    assert result.status == "ok" and output_path(tmp_path / "out", case.case_id).exists()
    assert result.metrics is None and "label values [7" in result.metrics_error


def test_a_full_disk_fails_the_case_in_one_line_and_leaves_no_partial_file(cases_dir, tmp_path, monkeypatch):
    import errno

    import bratsx.imageio as imageio

    real_save = nib.save
    calls = []

    def save_until_full(image, path):
        calls.append(path)
        if len(calls) == 2:  # the second case's write: the disk is full halfway through
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(image, path)

    monkeypatch.setattr(imageio.nib, "save", save_until_full)
    results = run_here(discover_cases(cases_dir), [ThresholdModel()], CONTRACT, tmp_path / "out")
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert results[1].error == f"case {results[1].case_id}: writing failed (No space left on device)"
    written = sorted(p.name for p in (tmp_path / "out").iterdir()
                     if p.is_file() and p.name not in ("metrics.csv", "summary.json"))  # the batch's summary
    assert written == sorted(f"{r.case_id}.nii.gz" for r in (results[0], results[2]))  # no partial file left
