"""An axial fly-through of the tumour as a small animated GIF (prediction over the background).

Frames share the overlay palette (:mod:`bratsx.report.colors`), so the GIF needs no colour
quantisation. To keep a file small enough to embed in the report (100-250 KB for BraTS tumours),
the frames are spread evenly over the tumour's axial extent and capped in number, and the background
keeps every other grey level (32), which LZW compresses about 25% better.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np

from .colors import OVERLAY_ALPHA
from .overlay import Plane, Screen, palette_image, panel

__all__ = ["MAX_FRAMES", "flythrough_gif"]

#: Most frames in a fly-through.
MAX_FRAMES = 24
#: Slices shown beyond the tumour at each end.
_MARGIN_SLICES = 2
_FRAME_MS = 120


def flythrough_gif(screen: Screen, alpha: float = OVERLAY_ALPHA, max_frames: int = MAX_FRAMES) -> bytes | None:
    """The GIF of axial slices from the bottom to the top of the predicted tumour.

    Args:
        screen: the case, from :func:`~bratsx.report.overlay.screen_volumes`.
        alpha: label opacity.
        max_frames: most frames; a taller tumour is sampled every few slices.

    Returns:
        The GIF file's bytes, or ``None`` when no tumour is predicted.
    """
    tissues = screen.prediction
    if tissues is None or not tissues.any():
        return None
    present = np.flatnonzero(tissues.any(axis=(1, 2)))
    first = max(int(present[0]) - _MARGIN_SLICES, 0)
    last = min(int(present[-1]) + _MARGIN_SLICES, tissues.shape[0] - 1)
    step = -(-(last - first + 1) // max_frames)
    screen = dataclasses.replace(screen, levels=screen.levels & np.uint8(0xFE))  # even grey levels only
    frames = [palette_image(panel(screen, Plane.AXIAL, z, tissues), alpha) for z in range(first, last + 1, step)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=_FRAME_MS, loop=0,
                   optimize=False)
    return buffer.getvalue()
