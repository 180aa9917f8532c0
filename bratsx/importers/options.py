"""What ``bratsx import nnunet`` imports and writes: its options, importable without torch (for ``--help``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..export.options import ExportOptions
from ..labels import Modality

__all__ = ["DEFAULT_CHECKPOINT", "NnunetImport"]

#: The checkpoint nnU-Net's predictor uses by default.
DEFAULT_CHECKPOINT = "checkpoint_final.pth"


@dataclass(frozen=True, kw_only=True)
class NnunetImport:
    """What ``bratsx import nnunet`` imports and writes.

    Attributes:
        folds: fold numbers; ``None``: every ``fold_N`` in the folder.
        checkpoint: checkpoint file name in each fold folder.
        channels: the user's channel mapping over ``dataset.json``'s names.
        export: fp16 / int8 / TensorRT, as ``bratsx export``.
    """

    folds: tuple[int, ...] | None = None
    checkpoint: str = DEFAULT_CHECKPOINT
    channels: dict[int, Modality] | None = None
    export: ExportOptions = field(default_factory=ExportOptions)
