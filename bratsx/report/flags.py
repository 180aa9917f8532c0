"""QC flags: which cases of a batch a reviewer should look at first, and why.

Each flag is a simple, explained rule on what the batch measured; none is a verdict. The volume
outlier uses the robust z-score of Iglewicz and Hoaglin (1993), ``0.6745 * (v - median) / MAD`` on
the predicted whole-tumour volume over the batch, which a few extreme cases cannot mask the way
they inflate a standard deviation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from ..labels import REGION_ORDER

__all__ = ["Evidence", "Flag", "FlagKind", "FlagOptions", "compute_flags", "flag_explanations"]

#: Scale that makes the median absolute deviation estimate a normal distribution's standard deviation.
_MAD_SCALE = 0.6745


class FlagKind(str, Enum):
    """The flags, in the order the report lists them."""

    FAILED = "failed"
    NO_TUMOUR = "no-tumour"
    ET_ABSENT = "et-absent"
    BORDER = "border"
    VOLUME_OUTLIER = "volume-outlier"
    LOW_DICE = "low-dice"


@dataclass(frozen=True, kw_only=True)
class FlagOptions:
    """Thresholds of the flags.

    Attributes:
        dice_below: flag a case whose Dice in any region is below this (cases with references only).
        outlier_z: flag a case whose robust z-score of WT volume exceeds this in magnitude.
        outlier_min_cases: fewest cases with a volume for the outlier flag to be computed at all.
    """

    dice_below: float = 0.5
    outlier_z: float = 3.5
    outlier_min_cases: int = 5


@dataclass(frozen=True)
class Evidence:
    """What the flags look at for one case.

    Attributes:
        case_id: the case.
        failed: inference failed.
        volumes_ml: predicted WT/TC/ET volumes (mL); empty when unknown.
        touches_border: whether the predicted tumour reaches a face of the volume (``None``: unknown).
        dice: Dice per region (``WT``, ``TC``, ``ET``) where a reference exists; empty otherwise.
    """

    case_id: str
    failed: bool = False
    volumes_ml: Mapping[str, float] = field(default_factory=dict)
    touches_border: bool | None = None
    dice: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Flag:
    """One flag raised on one case, with the numbers behind it."""

    kind: FlagKind
    detail: str


def flag_explanations(options: FlagOptions = FlagOptions()) -> dict[FlagKind, str]:
    """What each flag means and why it is worth a look, with the thresholds in use."""
    return {
        FlagKind.FAILED: "Inference failed for this case (its error is shown); no segmentation was written.",
        FlagKind.NO_TUMOUR: "No tumour voxel was predicted. Rare in glioma cohorts: check the inputs (wrong "
                            "modality, empty or misregistered volume) or a missed small lesion.",
        FlagKind.ET_ABSENT: "Tumour core is predicted but no enhancing tumour. Possible in low-grade gliomas; "
                            "otherwise check the T1ce for missed enhancement.",
        FlagKind.BORDER: "The predicted tumour touches a face of the volume: the field of view may cut the tumour "
                         "off, or the prediction leaks out of the brain.",
        FlagKind.VOLUME_OUTLIER: "Whole-tumour volume far from the batch: robust z-score "
                                 f"0.6745 x (V - median) / MAD beyond ±{options.outlier_z:g} (Iglewicz & Hoaglin), "
                                 f"computed when at least {options.outlier_min_cases} cases have a volume.",
        FlagKind.LOW_DICE: f"Dice below {options.dice_below:g} in at least one region against the reference.",
    }


def _robust_z(volumes: Mapping[str, float]) -> dict[str, float]:
    """Robust z-score of each value (empty when the MAD is zero: no spread to compare against)."""
    values = np.array(list(volumes.values()), dtype=float)
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    if mad == 0.0:
        return {}
    return {case_id: _MAD_SCALE * (v - median) / mad for case_id, v in volumes.items()}


def compute_flags(evidence: Sequence[Evidence], options: FlagOptions = FlagOptions()) -> dict[str, list[Flag]]:
    """Every flag of every case.

    Args:
        evidence: one per case of the batch (the outlier flag compares them with each other).
        options: thresholds.

    Returns:
        The flags raised on each case id (an empty list when none).
    """
    flags: dict[str, list[Flag]] = {e.case_id: [] for e in evidence}
    wt = {e.case_id: e.volumes_ml["WT"] for e in evidence if not e.failed and "WT" in e.volumes_ml}
    z_scores = _robust_z(wt) if len(wt) >= options.outlier_min_cases else {}
    for e in evidence:
        raised = flags[e.case_id]
        if e.failed:
            raised.append(Flag(FlagKind.FAILED, "inference failed"))
            continue
        if e.case_id in wt and wt[e.case_id] == 0.0:
            raised.append(Flag(FlagKind.NO_TUMOUR, "WT 0 mL"))
        if e.volumes_ml.get("ET") == 0.0 and e.volumes_ml.get("TC", 0.0) > 0.0:
            raised.append(Flag(FlagKind.ET_ABSENT, f"TC {e.volumes_ml['TC']:.1f} mL, ET 0 mL"))
        if e.touches_border:
            raised.append(Flag(FlagKind.BORDER, "tumour on the volume's edge"))
        z = z_scores.get(e.case_id)
        if z is not None and abs(z) > options.outlier_z:
            raised.append(Flag(FlagKind.VOLUME_OUTLIER, f"WT {wt[e.case_id]:.1f} mL, robust z {z:+.1f}"))
        low = [f"{r.value} {e.dice[r.value]:.2f}" for r in REGION_ORDER
               if r.value in e.dice and e.dice[r.value] < options.dice_below]
        if low:
            raised.append(Flag(FlagKind.LOW_DICE, "Dice " + ", ".join(low)))
    return flags
