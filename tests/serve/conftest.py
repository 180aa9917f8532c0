"""Fixtures of the web app's tests: the tiny model's folder, small synthetic cases, a reviewed batch."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from serving import HOSTILE_ID

from bratsx.synth import write_synthetic_dataset

#: A case id that would run script if the page ever parsed case ids as HTML.


@pytest.fixture(scope="session")
def model_folder(tiny_onnx) -> Path:
    """The tiny exported model's folder (patch 16^3)."""
    return Path(tiny_onnx).parent


@pytest.fixture(scope="session")
def small_case(tmp_path_factory) -> Path:
    """A 32x32x24 synthetic BraTS 2018-2021 case folder, with its reference."""
    root = tmp_path_factory.mktemp("serve_case")
    return write_synthetic_dataset(root, cases=1, shape=(32, 32, 24), seed=3)[0]


@pytest.fixture(scope="session")
def batch(tmp_path_factory, model_folder) -> tuple[Path, Path]:
    """(cases, predictions) of a bratsx infer run over two cases, one of them with a hostile id."""
    from bratsx.cases import discover_cases
    from bratsx.runtime import ModelSpec, RunnerSpec, run_batch

    root = tmp_path_factory.mktemp("serve_batch")
    cases = root / "cases"
    first = write_synthetic_dataset(cases, cases=1, shape=(32, 32, 24), seed=4)[0]
    hostile = cases / HOSTILE_ID
    hostile.mkdir()
    for name, modality in (("flair", "flair"), ("t1", "t1"), ("t1ce", "t1ce"), ("t2", "t2")):
        shutil.copy(first / f"{first.name}_{modality}.nii.gz", hostile / f"{name}.nii.gz")
    predictions = root / "predictions"
    with RunnerSpec(ModelSpec(paths=(model_folder,), backend="ort")).open() as runner:
        run_batch(discover_cases(cases), runner, predictions)
    return cases, predictions
