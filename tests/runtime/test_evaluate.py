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
    reference[2:4, 2:4, 2:4] = 3  # ET, BraTS 2023 values
    reference[4:6, 2:4, 2:4] = 2  # edema
    prediction = np.zeros((10, 10, 10), np.uint8)
    prediction[2:4, 2:4, 2:4] = 4  # the same ET, BraTS 2018-2021 values
    write_pair(tmp_path, prediction, reference)
    [result] = evaluate_directories(tmp_path / "pred", tmp_path / "ref")
    assert result.error is None
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
