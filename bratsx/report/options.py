"""How to draw a case: options that the command line reads without loading the drawing code (or Pillow)."""

from __future__ import annotations

from dataclasses import dataclass

from ..labels import LabelConvention, Modality
from .colors import OVERLAY_ALPHA

__all__ = ["RenderOptions"]


@dataclass(frozen=True, kw_only=True)
class RenderOptions:
    """How to draw the cases.

    Attributes:
        background: modality under the labels.
        gif: also write the axial fly-through.
        alpha: label opacity.
        convention: label convention of the predictions (default: MSD for MSD cases, else read from the values).
    """

    background: Modality = Modality.T1CE
    gif: bool = False
    alpha: float = OVERLAY_ALPHA
    convention: LabelConvention | None = None
