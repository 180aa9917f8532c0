import numpy as np
import pytest
from casefiles import save
from typer.testing import CliRunner

from bratsx.cli import app
from bratsx.errors import BratsxError
from bratsx.runtime.evaluate import evaluate_directories


def write_pair(tmp_path, prediction, reference, case_id="case_1"):
    (tmp_path / "pred").mkdir(exist_ok=True)
    (tmp_path / "ref" / case_id).mkdir(parents=True, exist_ok=True)
    save(prediction, tmp_path / "pred" / f"{case_id}.nii.gz")
    save(reference, tmp_path / "ref" / case_id / f"{case_id}-seg.nii.gz")


def test_metrics_across_conventions_by_hand(tmp_path):
    reference = np.zeros((10, 10, 10), np.uint8)
    reference[2:4, 2:4, 2:4] = 4  # ET, BraTS 2018-2021 values (the id says 2018)
    reference[4:6, 2:4, 2:4] = 2  # edema
    prediction = np.zeros((10, 10, 10), np.uint8)
    prediction[2:4, 2:4, 2:4] = 3  # the same ET, BraTS 2023 values
    write_pair(tmp_path, prediction, reference, case_id="Brats18_TCIA_001_1")
    [result] = evaluate_directories(tmp_path / "pred", tmp_path / "ref")
    assert result.error is None and result.label_set == "brats2020"
    assert result.metrics["dice_ET"] == 1.0 and result.metrics["dice_TC"] == 1.0
    assert result.metrics["dice_WT"] == pytest.approx(2 * 8 / (8 + 16))
    assert result.metrics["sensitivity_WT"] == pytest.approx(0.5)
    assert result.metrics["volume_ref_ml_WT"] == pytest.approx(16 / 1000)


def test_a_prediction_on_another_grid_is_reported(tmp_path):
    write_pair(tmp_path, np.zeros((10, 10, 9), np.uint8), np.zeros((10, 10, 10), np.uint8))
    [result] = evaluate_directories(tmp_path / "pred", tmp_path / "ref")
    assert "does not match the reference" in result.error


def test_no_common_case_is_a_clear_error(tmp_path):
    write_pair(tmp_path, np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8))
    (tmp_path / "pred" / "case_1.nii.gz").rename(tmp_path / "pred" / "other.nii.gz")
    with pytest.raises(BratsxError, match="no case id appears both"):
        evaluate_directories(tmp_path / "pred", tmp_path / "ref")


def test_cli_writes_its_own_folder_and_keeps_the_predictions_files(tmp_path):
    write_pair(tmp_path, np.ones((4, 4, 4), np.uint8), np.ones((4, 4, 4), np.uint8))
    (tmp_path / "pred" / "metrics.csv").write_text("from infer")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "ref")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pred" / "metrics.csv").read_text() == "from infer"
    assert (tmp_path / "pred" / "evaluation" / "summary.json").exists()


def test_every_case_is_accounted_for(tmp_path):
    label = np.ones((4, 4, 4), np.uint8)
    write_pair(tmp_path, label, label, "scored")
    write_pair(tmp_path, label, label, "unpredicted")
    (tmp_path / "pred" / "unpredicted.nii.gz").unlink()
    write_pair(tmp_path, label, label, "doubled")
    save(label, tmp_path / "ref" / "doubled" / "doubled_label.nii.gz")  # two candidate references
    save(label, tmp_path / "pred" / "orphan.nii.gz")
    records = {r.case_id: r for r in evaluate_directories(tmp_path / "pred", tmp_path / "ref")}
    assert {k: r.status for k, r in records.items()} == {
        "scored": "ok", "unpredicted": "missing", "doubled": "ambiguous", "orphan": "unreferenced"}
    assert "doubled-seg.nii.gz, doubled_label.nii.gz" in records["doubled"].error

    runner = CliRunner()
    strict = runner.invoke(app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "ref")], env={"COLUMNS": "200"})
    assert strict.exit_code == 1 and "missing" in strict.output and "ambiguous" in strict.output
    summary = (tmp_path / "pred" / "evaluation" / "summary.json").read_text()
    assert '"missing": 1' in summary and '"ambiguous": 1' in summary
    csv_rows = (tmp_path / "pred" / "evaluation" / "metrics.csv").read_text()
    assert "unpredicted,missing" in csv_rows


def test_allow_missing_relaxes_only_missing_predictions(tmp_path):
    label = np.ones((4, 4, 4), np.uint8)
    write_pair(tmp_path, label, label, "scored")
    write_pair(tmp_path, label, label, "unpredicted")
    (tmp_path / "pred" / "unpredicted.nii.gz").unlink()
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "ref"), "--allow-missing"])
    assert result.exit_code == 0, result.output


def test_lesion_wise_metrics_are_added_on_request(tmp_path):
    reference = np.zeros((30, 30, 30), np.uint8)
    reference[5:10, 5:10, 5:10] = 2  # one 125 mm3 edema lesion
    prediction = np.zeros_like(reference)
    prediction[5:10, 5:10, 5:10] = 2
    prediction[20:25, 20:25, 20:25] = 2  # a false-positive lesion
    write_pair(tmp_path, prediction, reference)
    [plain] = evaluate_directories(tmp_path / "pred", tmp_path / "ref")
    assert "lesion_dice_WT" not in plain.metrics
    [record] = evaluate_directories(tmp_path / "pred", tmp_path / "ref", lesion_wise=True)
    assert record.metrics["lesion_dice_WT"] == pytest.approx(0.5)  # (1 + 0) / (1 TP + 1 FP)
    assert record.metrics["lesions_fp_WT"] == 1
