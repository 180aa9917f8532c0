"""Cross-validation bookkeeping: nnU-Net's split, splits.json reused, fold selection, the out-of-fold summary."""

from __future__ import annotations

import json

import pytest

from bratsx.crossval import SPLITS_FILE, cv_folds, cv_summary, fold_selection, nnunet_folds
from bratsx.errors import BratsxError

IDS = [f"case_{i:02d}" for i in range(16)]


def test_the_fold_split_is_deterministic_disjoint_and_covers_every_case():
    folds = nnunet_folds(reversed(IDS))  # the order given does not matter: ids are sorted first
    assert folds == nnunet_folds(IDS)
    held_out = [c for fold in folds for c in fold.val]
    assert sorted(held_out) == IDS and len(held_out) == len(set(held_out))
    assert [len(fold.val) for fold in folds] == [4, 3, 3, 3, 3]
    for fold in folds:
        assert not set(fold.train) & set(fold.val) and sorted(fold.train + fold.val) == IDS


def test_the_fold_split_is_nnunets():
    crossval_split = pytest.importorskip("nnunetv2.utilities.crossval_split")
    theirs = crossval_split.generate_crossval_split(sorted(IDS), seed=12345, n_splits=5)
    assert [fold.to_dict() for fold in nnunet_folds(IDS)] == [
        {"train": sorted(f["train"]), "val": sorted(f["val"])} for f in theirs]


def test_splits_json_is_written_once_and_reused(tmp_path):
    first = cv_folds(tmp_path, IDS, 5)
    (tmp_path / SPLITS_FILE).write_text(json.dumps([f.to_dict() for f in reversed(first)]))
    assert cv_folds(tmp_path, IDS, 5) == list(reversed(first))  # the saved split wins over a fresh one
    with pytest.raises(BratsxError, match="do not match"):
        cv_folds(tmp_path, IDS[:-1], 5)
    with pytest.raises(BratsxError, match="do not match"):
        cv_folds(tmp_path, IDS, 4)


@pytest.mark.parametrize("given, expected", [("all", [0, 1, 2]), ("1", [1])])
def test_fold_selection(given, expected):
    assert fold_selection(given, 3) == expected


@pytest.mark.parametrize("given", ["3", "-1", "first"])
def test_a_bad_fold_is_one_line(given):
    with pytest.raises(BratsxError, match="--fold"):
        fold_selection(given, 3)


def test_summary_pools_the_out_of_fold_records_per_fold(tmp_path):
    folds = cv_folds(tmp_path, IDS[:4], 2)
    records = tmp_path / "oof" / "records"
    records.mkdir(parents=True)
    dice = {c: i / 10 for i, c in enumerate(IDS[:3])}  # the fourth case has no prediction yet
    for case_id, value in dice.items():
        metrics = {f"{m}_{r}": value for m in ("dice", "lesion_dice") for r in ("WT", "TC", "ET")}
        (records / f"{case_id}.json").write_text(json.dumps({"case_id": case_id, "status": "ok", "metrics": metrics}))
    summary = cv_summary(tmp_path)
    assert summary["pooled"]["cases"] == 3 and summary["pooled"]["missing"] == [IDS[3]]
    assert summary["pooled"]["dice"]["WT"] == pytest.approx(sum(dice.values()) / 3)
    for fold, split in zip(summary["folds"], folds):
        present = [dice[c] for c in split.val if c in dice]
        assert fold["lesion_dice"]["ET"] == pytest.approx(sum(present) / len(present))
    assert json.loads((tmp_path / "cv_summary.json").read_text()) == summary
