"""What ``bratsx import nnunet`` and ``import monai-bundle`` import and write: options importable without torch
(for ``--help``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..export.options import ExportOptions

__all__ = ["DEFAULT_CHECKPOINT", "MonaiBundleImport", "NnunetImport"]

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
    channels: dict[int, str] | None = None
    export: ExportOptions = field(default_factory=ExportOptions)


@dataclass(frozen=True, kw_only=True)
class MonaiBundleImport:
    """What ``bratsx import monai-bundle`` imports and writes.

    Attributes:
        orientation: nibabel axis codes of the arrays the network was trained on, for a bundle whose
            preprocessing has no ``Orientationd`` (its network then sees each file's stored axes; BraTS files are
            stored ``LPS``); ``None``: the bundle's ``Orientationd`` says it, and a bundle without one is refused.
        export: fp16 / int8, as ``bratsx export``.
        channels: the user's channel mapping over the metadata's ``channel_def`` names.
    """

    orientation: str | None = None
    export: ExportOptions = field(default_factory=ExportOptions)
    channels: dict[int, str] | None = None
