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
        convention: label set of the predictions and references (default: stated by the case's layout, id or
            dataset.json, else read from the values where they are unambiguous).
    """

    background: Modality = Modality.T1CE
    gif: bool = False
    alpha: float = OVERLAY_ALPHA
    convention: LabelConvention | None = None
