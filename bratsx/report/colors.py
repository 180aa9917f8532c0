"""The one colour table of every bratsx picture, and the 256-entry palette images are drawn with.

Tumour tissues are coloured as ITK-SNAP shows a BraTS 2018-2021 label file (label 1 red, 2 green,
4 yellow), the colours most BraTS readers know, whatever convention a file uses:

=====================================  ===============  ==========================
tissue                                 colour           BraTS 2018-21 / 2023 / MSD
=====================================  ===============  ==========================
necrotic / non-enhancing core (NCR)    red (255,0,0)    1 / 1 / 2
edema (ED, SNFH)                       green (0,255,0)  2 / 2 / 1
enhancing tumour (ET)                  yellow (255,255,0)  4 / 3 / 3
=====================================  ===============  ==========================

Images are drawn as palette ("P" mode) images: indices ``block * LEVELS + grey`` with ``block`` 0
for no tumour and the :class:`~bratsx.labels.Tissue` value otherwise, and ``grey`` one of
:data:`LEVELS` background intensities; each palette entry is the grey blended with the tissue's
colour at :data:`OVERLAY_ALPHA`. Colouring a slice is then one integer operation per pixel, PNG
and GIF files store one byte per pixel, and the GIF palette is exact (no quantisation).
"""

from __future__ import annotations

from ..labels import Tissue

__all__ = [
    "LEVELS",
    "OVERLAY_ALPHA",
    "TISSUE_COLORS",
    "TISSUE_NAMES",
    "overlay_palette",
    "swatch_index",
]

#: Colour of each tissue (RGB).
TISSUE_COLORS: dict[Tissue, tuple[int, int, int]] = {
    Tissue.NECROTIC_CORE: (255, 0, 0),
    Tissue.EDEMA: (0, 255, 0),
    Tissue.ENHANCING: (255, 255, 0),
}

#: Legend text of each tissue.
TISSUE_NAMES: dict[Tissue, str] = {
    Tissue.NECROTIC_CORE: "NCR: necrotic / non-enhancing core",
    Tissue.EDEMA: "ED: edema",
    Tissue.ENHANCING: "ET: enhancing tumour",
}

#: Grey levels of the background per palette block (4 blocks of 63, then the legend's swatches).
LEVELS = 63
#: Opacity of the label colours over the background.
OVERLAY_ALPHA = 0.45
_SWATCH_BASE = (1 + len(Tissue)) * LEVELS  # 252: opaque tissue colours for the legend
_PALETTE_SIZE = 256


def swatch_index(tissue: Tissue) -> int:
    """Palette index of a tissue's opaque colour (legend swatches)."""
    return _SWATCH_BASE + int(tissue) - 1


def overlay_palette(alpha: float = OVERLAY_ALPHA) -> list[int]:
    """The 768-value RGB palette: grey levels blended with each tissue colour, then the opaque swatches.

    Args:
        alpha: label opacity, 0 (invisible) to 1 (opaque).

    Returns:
        ``[r0, g0, b0, r1, ...]`` for the 256 indices, as :meth:`PIL.Image.Image.putpalette` takes it.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"label opacity must lie in [0, 1], got {alpha}")
    palette: list[int] = []
    for tissue in (None, *Tissue):
        for level in range(LEVELS):
            grey = round(255 * level / (LEVELS - 1))
            if tissue is None:
                palette.extend((grey, grey, grey))
            else:
                palette.extend(round((1.0 - alpha) * grey + alpha * channel) for channel in TISSUE_COLORS[tissue])
    for tissue in Tissue:
        palette.extend(TISSUE_COLORS[tissue])
    return palette + [0] * (3 * _PALETTE_SIZE - len(palette))

