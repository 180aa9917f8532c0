"""Cross-validation: nnU-Net's fold split, one run per fold, out-of-fold predictions and their summary.

A cross-validation lives in one folder (``WORKSPACE/runs/<name>/``)::

    splits.json         the folds, written once by the first fold trained and reused by every other
    fold_<k>/           fold k's training run (checkpoints, metrics.jsonl, ...), resumable as any run
    oof/                each case segmented by the fold that did not train on it, without post-processing:
                        <case_id>.nii.gz and records/<case_id>.json (metrics) -- what postprocess tune takes
    cv_summary.json     per-fold and pooled out-of-fold Dice and lesion-wise Dice (bratsx cv summary)

The split is nnU-Net v2's (``nnunetv2.utilities.crossval_split.generate_crossval_split``, read at
``nnunetv2`` 2.x; reimplemented, no code copied): the case ids sorted, shuffled once by
``numpy.random.RandomState(12345)`` and cut into consecutive folds, the first ``n % k`` folds one case
larger (scikit-learn's ``KFold(shuffle=True, random_state=12345)``), with no stratification.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_bytes_atomic
from .errors import BratsxError

__all__ = ["NNUNET_SEED", "OOF_DIR", "SPLITS_FILE", "SUMMARY_FILE", "Split", "cv_folds", "cv_summary", "fold_run_dir",
           "fold_selection", "nnunet_folds", "predict_out_of_fold", "read_folds"]

@dataclass(frozen=True)
class Split:
    """Training and validation case ids (one fold); torch-free, shared with the trainer."""

    train: tuple[str, ...]
    val: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "val": list(self.val)}


#: nnU-Net's split seed.
NNUNET_SEED = 12345
SPLITS_FILE = "splits.json"
OOF_DIR = "oof"
SUMMARY_FILE = "cv_summary.json"
_REGIONS = ("WT", "TC", "ET")


def nnunet_folds(case_ids: Sequence[str], folds: int = 5, seed: int = NNUNET_SEED) -> list[Split]:
    """nnU-Net's k-fold split of ``case_ids`` (module docstring): deterministic, disjoint validation folds
    covering every case once.

    Raises:
        BratsxError: fewer cases than folds, or fewer than 2 folds.
    """
    ordered = sorted(case_ids)
    if folds < 2 or len(ordered) < folds:
        raise BratsxError(f"{len(ordered)} case(s) cannot make {folds} folds (need at least 2 folds and one case each)")
    indices = np.arange(len(ordered))
    np.random.RandomState(seed).shuffle(indices)
    sizes = np.full(folds, len(ordered) // folds)
    sizes[: len(ordered) % folds] += 1
    splits, start = [], 0
    for size in sizes:
        val = {ordered[i] for i in indices[start:start + size]}
        splits.append(Split(tuple(c for c in ordered if c not in val), tuple(c for c in ordered if c in val)))
        start += size
    return splits


def fold_run_dir(cv_dir: Path, fold: int) -> Path:
    """Fold ``fold``'s run directory inside the cross-validation folder."""
    return Path(cv_dir) / f"fold_{fold}"


def read_folds(cv_dir: Path) -> list[Split]:
    """The folds saved in ``cv_dir/splits.json``.

    Raises:
        BratsxError: no such file, or not a list of ``{"train": [...], "val": [...]}``.
    """
    path = Path(cv_dir) / SPLITS_FILE
    if not path.is_file():
        raise BratsxError(f"{cv_dir}: no {SPLITS_FILE}; is it a cross-validation folder (bratsx train --folds)?")
    try:
        return [Split(tuple(f["train"]), tuple(f["val"])) for f in json.loads(path.read_text())]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BratsxError(f"{path}: not a readable fold split ({error})") from error


def cv_folds(cv_dir: Path, case_ids: Sequence[str], folds: int) -> list[Split]:
    """The folds of the cross-validation in ``cv_dir``: read from its ``splits.json``, or made by
    :func:`nnunet_folds` and written there (atomically) when it has none yet.

    Raises:
        BratsxError: the saved split has another number of folds or other cases than ``case_ids``.
    """
    path = Path(cv_dir) / SPLITS_FILE
    if path.is_file():
        saved = read_folds(cv_dir)
        covered = sorted(c for split in saved for c in split.val)
        if len(saved) != folds or covered != sorted(case_ids):
            raise BratsxError(f"{path}: its {len(saved)} fold(s) over {len(covered)} case(s) do not match --folds "
                              f"{folds} over the {len(case_ids)} labelled case(s) found; use a new --name")
        return saved
    splits = nnunet_folds(case_ids, folds)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps([s.to_dict() for s in splits], indent=2) + "\n").encode())
    return splits


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def cv_summary(cv_dir: Path) -> dict[str, Any]:
    """Per-fold and pooled out-of-fold Dice and lesion-wise Dice from the ``oof/records`` of ``cv_dir``, written
    to ``cv_summary.json`` (atomically).

    Returns:
        ``{"folds": [{"fold", "cases", "missing", "dice": {...}, "lesion_dice": {...}}], "pooled": {...}}``.

    Raises:
        BratsxError: ``cv_dir`` has no ``splits.json``.
    """
    cv_dir = Path(cv_dir)
    splits = read_folds(cv_dir)
    records = {}
    for path in sorted((cv_dir / OOF_DIR / "records").glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("status") == "ok" and record.get("metrics"):
            records[record["case_id"]] = record["metrics"]

    def scores(case_ids: Sequence[str]) -> dict[str, Any]:
        found = [records[c] for c in case_ids if c in records]
        return {"cases": len(found), "missing": [c for c in case_ids if c not in records],
                **{metric: {r: _mean([m[f"{metric}_{r}"] for m in found if f"{metric}_{r}" in m]) for r in _REGIONS}
                   for metric in ("dice", "lesion_dice")}}

    summary = {"folds": [{"fold": k, **scores(split.val)} for k, split in enumerate(splits)],
               "pooled": scores([c for split in splits for c in split.val])}
    write_bytes_atomic(cv_dir / SUMMARY_FILE, (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def fold_selection(fold: str, folds: int) -> list[int]:
    """``--fold K`` or ``--fold all`` as the folds to train, in order.

    Raises:
        BratsxError: neither ``all`` nor a fold number below ``folds``.
    """
    if fold == "all":
        return list(range(folds))
    if not fold.isdigit() or not 0 <= int(fold) < folds:
        raise BratsxError(f"--fold {fold!r}: give 'all' or a fold number from 0 to {folds - 1}")
    return [int(fold)]


def predict_out_of_fold(cv_dir: Path, fold: int, cases: Sequence, backend: str = "torch") -> list:
    """Segment fold ``fold``'s validation cases with that fold's run, without post-processing, into ``cv_dir/oof``
    (``<case_id>.nii.gz`` and ``records/<case_id>.json`` with the metrics): the predictions ``bratsx postprocess
    tune --predictions`` and :func:`cv_summary` take.

    Args:
        cv_dir: the cross-validation folder.
        fold: the fold.
        cases: every labelled case (those of the fold's validation set are segmented).
        backend: the backend to run the fold's checkpoint with.

    Returns:
        The records of the fold's cases.
    """
    from .postprocess import NO_POSTPROCESS
    from .runtime.batch import run_batch
    from .runtime.ensemble import model_identity
    from .runtime.models import open_model
    from .runtime.runner import Runner
    from .runtime.segment import SegmentOptions

    val = set(read_folds(cv_dir)[fold].val)
    with open_model(fold_run_dir(cv_dir, fold), backend) as opened:
        runner = Runner.from_backends([opened.backend], opened.contract, SegmentOptions(postprocess=NO_POSTPROCESS),
                                      identity=model_identity([opened]))
        return run_batch([c for c in cases if c.case_id in val], runner, Path(cv_dir) / OOF_DIR).records
