"""bratsx train and label sets: an ambiguous reference stops the run in one line; --labels states the set,
and the checkpoint's contract records it."""

import pytest
import torch
from casefiles import write_folder_case
from typer.testing import CliRunner

from bratsx.cases import Layout
from bratsx.cli import app

runner = CliRunner()


def _train(data, tmp_path, *extra):
    args = ["train", str(data), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--epochs",
            "1", "--iterations", "1", "--patch", "16", "16", "16", "--features", "4,8", "--val-fraction", "0.34",
            "--workers", "0", "--gpus", "0", *extra]
    return runner.invoke(app, args, env={"COLUMNS": "250"})


@pytest.fixture
def ambiguous_data(tmp_path):
    for name in ("case_a", "case_b", "case_c"):  # plain folders, 0/1/2/4: 2018-2021 ET or 2024 RC?
        write_folder_case(tmp_path / "data", Layout.PLAIN, name, label_values=(1, 2, 4), shape=(24, 24, 20))
    return tmp_path / "data"


def test_an_ambiguous_reference_stops_training_in_one_line(ambiguous_data, tmp_path):
    result = _train(ambiguous_data, tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    said = " ".join(result.output.split())
    assert "label values [0, 1, 2, 4] are ambiguous" in said and "--labels brats2020|brats2024" in said
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_labels_states_the_set_and_the_contract_records_it(ambiguous_data, tmp_path):
    result = _train(ambiguous_data, tmp_path, "--labels", "brats2020")
    assert result.exit_code == 0, result.output
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert checkpoint["contract"]["label_set"] == "brats2020"
