"""Overlay pictures of one case: three planes through the tumour, labels over a background modality.

Everything here works on canonical arrays (``(z, y, x)``, voxel axes S, P, L: see
:mod:`bratsx.geometry`) and draws them in the radiological convention, stated on every figure:

* axial: patient's right on screen left, anterior up;
* coronal: patient's right on screen left, superior up;
* sagittal: anterior on screen left, superior up.

Whatever orientation a case is stored in, loading brings it to the canonical one, so the same
anatomy gives the same picture. Pixels are square: each plane is resampled by the voxel spacing
(bilinear for the background, nearest for labels) to one pixel per smallest voxel edge.
Pictures are palette images (see :mod:`bratsx.report.colors`), one byte per pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..boxes import bounding_box, whole
from ..labels import REGION_ORDER, REGION_TISSUES, Tissue
from ..metrics import region_volumes_ml
from .colors import LEVELS, OVERLAY_ALPHA, TISSUE_NAMES, overlay_palette, swatch_index

__all__ = [
    "ORIENTATION_NOTE",
    "CaseVolumes",
    "Plane",
    "Screen",
    "figure",
    "palette_image",
    "panel",
    "tissue_volumes_ml",
    "screen_volumes",
    "thumbnail",
    "touches_border",
    "tumour_slices",
]

#: How the planes are shown (written on every figure and in the report).
ORIENTATION_NOTE = ("Radiological view: patient's right on screen left (axial, coronal); anterior up (axial); "
                    "superior up (coronal, sagittal); sagittal: anterior on screen left.")

#: Lower and upper percentile of the background intensities inside the brain mapped to black and white.
WINDOW_PERCENTILES = (0.5, 99.5)
#: Voxels kept around the brain's bounding box.
CROP_MARGIN = 4
_THUMBNAIL_SIZE = 128
_FONT_SIZE, _SMALL_FONT_SIZE = 13, 11
_PAD = 6
_LABEL_WIDTH = 64  # left margin holding the plane names
_SWATCH = 10  # legend swatch edge (pixels)
_MIN_PANEL = 160  # pixels along a panel's longest side, at least (by a whole zoom factor)


class Plane(str, Enum):
    """The three orthogonal planes, in display order."""

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


#: Canonical axis held fixed by each plane (0 = S, 1 = P, 2 = L).
_PLANE_AXIS = {Plane.AXIAL: 0, Plane.CORONAL: 1, Plane.SAGITTAL: 2}
#: Edge letters of each plane on screen: (left, right, top, bottom).
_EDGE_LETTERS = {Plane.AXIAL: "RLAP", Plane.CORONAL: "RLSI", Plane.SAGITTAL: "APSI"}


@dataclass(frozen=True)
class CaseVolumes:
    """One case ready to draw, all arrays canonical ``(z, y, x)`` of one shape.

    Attributes:
        case_id: shown in the caption.
        background: float32 intensities of the background modality.
        prediction: uint8 tissue map (0 background, else a :class:`~bratsx.labels.Tissue` value), or ``None``.
        reference: the reference tissue map, or ``None``.
        spacing: voxel size in mm along the canonical axes.
        modality: name of the background modality, for the column heading.
    """

    case_id: str
    background: np.ndarray
    prediction: np.ndarray | None
    reference: np.ndarray | None
    spacing: tuple[float, float, float]
    modality: str = "T1ce"


@dataclass(frozen=True)
class Screen:
    """A case cropped to the brain with its background as palette grey levels, ready to slice.

    Attributes:
        levels: uint8 grey level (0 to ``LEVELS - 1``) per voxel, windowed inside the brain.
        prediction: cropped tissue map, or ``None``.
        reference: cropped tissue map, or ``None``.
        spacing: canonical voxel size in mm.
    """

    levels: np.ndarray
    prediction: np.ndarray | None
    reference: np.ndarray | None
    spacing: tuple[float, float, float]


def palette_image(indices: np.ndarray, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """A ``P``-mode image of palette indices (uint8 ``(rows, columns)``) with the overlay palette."""
    image = Image.fromarray(np.ascontiguousarray(indices, dtype=np.uint8), "P")
    image.putpalette(overlay_palette(alpha))
    return image


def tissue_volumes_ml(tissues: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """WT, TC and ET volumes (mL) of a tissue map (:func:`bratsx.metrics.region_volumes_ml` of its regions)."""
    regions = np.stack([np.isin(tissues, [t.value for t in REGION_TISSUES[region]]) for region in REGION_ORDER])
    return region_volumes_ml(regions, spacing)


def touches_border(tissues: np.ndarray) -> bool:
    """Whether any tumour voxel lies on a face of the volume (the tumour may be cut off)."""
    return any(np.take(tissues, edge, axis=axis).any() for axis in range(tissues.ndim) for edge in (0, -1))


def _grey_levels(background: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Background intensities windowed by percentiles inside the brain, as grey levels 0..LEVELS-1."""
    inside = background[::2, ::2, ::2][brain[::2, ::2, ::2]]
    if inside.size == 0:
        return np.zeros(background.shape, dtype=np.uint8)
    low, high = (float(v) for v in np.percentile(inside, WINDOW_PERCENTILES))
    scale = (LEVELS - 1) / (high - low) if high > low else 0.0
    levels = (background - np.float32(low)) * np.float32(scale)
    np.clip(levels, 0, LEVELS - 1, out=levels)
    return np.rint(levels).astype(np.uint8)


def screen_volumes(volumes: CaseVolumes) -> Screen:
    """Crop a case to the brain (and tumour) box and window its background, once for every picture."""
    mask = volumes.background != 0
    for tissues in (volumes.prediction, volumes.reference):
        if tissues is not None:
            mask = mask | (tissues > 0)
    box = bounding_box(mask, CROP_MARGIN) or whole(mask.shape)
    background = volumes.background[box]
    prediction, reference = (None if t is None else t[box] for t in (volumes.prediction, volumes.reference))
    return Screen(_grey_levels(background, background != 0), prediction, reference, volumes.spacing)


def tumour_slices(tissues: np.ndarray) -> dict[Plane, int]:
    """Per plane, the index (along the plane's canonical axis) of the slice with the largest tumour area."""
    tumour = tissues > 0
    return {plane: int(np.argmax(np.count_nonzero(tumour, axis=tuple(a for a in range(3) if a != axis))))
            for plane, axis in _PLANE_AXIS.items()}


def _on_screen(volume: np.ndarray, plane: Plane, index: int) -> np.ndarray:
    """A canonical slice in screen orientation: row 0 at the top, column 0 at the left (radiological)."""
    if plane is Plane.AXIAL:
        return volume[index]  # rows anterior -> posterior, columns right -> left
    if plane is Plane.CORONAL:
        return volume[::-1, index]  # rows superior -> inferior, columns right -> left
    return volume[::-1, :, index]  # rows superior -> inferior, columns anterior -> posterior


def _screen_spacing(spacing: Sequence[float], plane: Plane) -> tuple[float, float]:
    """(row, column) pixel size in mm of a plane's slices."""
    kept = [s for axis, s in enumerate(spacing) if axis != _PLANE_AXIS[plane]]
    return kept[0], kept[1]


def _resample(pixels: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    if pixels.shape[::-1] == size:
        return np.ascontiguousarray(pixels)
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize(size, resample))


def panel(screen: Screen, plane: Plane, index: int, tissues: np.ndarray | None, zoom: int = 1) -> np.ndarray:
    """One plane as palette indices: grey background, tissues coloured, square pixels.

    Args:
        screen: the case from :func:`screen_volumes`.
        plane: which plane.
        index: the slice along the plane's canonical axis (in ``screen``'s cropped volume).
        tissues: the tissue map drawn over it (``screen.prediction``, ``screen.reference``) or ``None``.
        zoom: pixels per smallest voxel edge.

    Returns:
        uint8 ``(rows, columns)`` indices into :func:`~bratsx.report.colors.overlay_palette`.
    """
    pixel_mm = min(screen.spacing) / zoom
    row_mm, column_mm = _screen_spacing(screen.spacing, plane)
    grey = _on_screen(screen.levels, plane, index)
    size = (max(1, round(grey.shape[1] * column_mm / pixel_mm)), max(1, round(grey.shape[0] * row_mm / pixel_mm)))
    indices = _resample(grey, size, Image.Resampling.BILINEAR)
    if tissues is not None:
        colour = _resample(_on_screen(tissues, plane, index), size, Image.Resampling.NEAREST)
        indices = indices + np.uint8(LEVELS) * colour
    return indices


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _wrap(text: str, width: int, font) -> list[str]:
    """Greedy word wrap of ``text`` into lines no wider than ``width`` pixels."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _guide_slices(screen: Screen) -> dict[Plane, int]:
    """Where the planes cross: the prediction's largest tumour area, else the reference's, else the centre."""
    for tissues in (screen.prediction, screen.reference):
        if tissues is not None and tissues.any():
            return tumour_slices(tissues)
    return {plane: screen.levels.shape[axis] // 2 for plane, axis in _PLANE_AXIS.items()}


def figure(volumes: CaseVolumes, screen: Screen | None = None, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """The case's picture: rows axial, coronal, sagittal; columns background, prediction, reference.

    The planes cross the tumour where its area is largest (the prediction's tumour, else the
    reference's, else the brain's centre). The caption holds the case id and the WT/TC/ET volumes,
    the legend the colour table and the orientation.

    Args:
        volumes: the case.
        screen: :func:`screen_volumes` of ``volumes`` when already computed.
        alpha: label opacity.

    Returns:
        A palette image.
    """
    screen = screen or screen_volumes(volumes)
    slices = _guide_slices(screen)
    largest = max(n * mm for n, mm in zip(screen.levels.shape, screen.spacing)) / min(screen.spacing)
    zoom = max(1, math.ceil(_MIN_PANEL / largest))  # small volumes are enlarged to stay readable
    columns = [(volumes.modality, None)]
    if screen.prediction is not None:
        columns.append(("prediction", screen.prediction))
    if screen.reference is not None:
        columns.append(("reference", screen.reference))
    grid = [[panel(screen, plane, slices[plane], tissues, zoom) for _, tissues in columns] for plane in Plane]
    caption = [volumes.case_id]
    for what, tissues in (("prediction", screen.prediction), ("reference", screen.reference)):
        if tissues is not None:  # the cropped volumes hold every tumour voxel, and are faster to count
            caption.append(f"{what}: " + " · ".join(
                f"{region} {ml:.1f} mL" for region, ml in tissue_volumes_ml(tissues, volumes.spacing).items()))
    return _compose(caption, [name for name, _ in columns], grid, alpha)


def _compose(caption: list[str], columns: list[str], grid: list[list[np.ndarray]], alpha: float) -> Image.Image:
    """Lay out the panels with caption, column headings, plane names, edge letters and legend.

    Text is drawn anti-aliased on a coverage mask and stamped in as grey levels at the end.
    """
    font, small = _font(_FONT_SIZE), _font(_SMALL_FONT_SIZE)
    line, small_line = _FONT_SIZE + 4, _SMALL_FONT_SIZE + 4
    column_width = max(pixels.shape[1] for row in grid for pixels in row)
    row_heights = [row[0].shape[0] for row in grid]
    width = _LABEL_WIDTH + len(columns) * (column_width + _PAD) + _PAD
    caption = [wrapped for text in caption for wrapped in _wrap(text, width - 2 * _PAD, font)]
    notes = _wrap(ORIENTATION_NOTE, width - 2 * _PAD, small)
    top = _PAD + line * (len(caption) + 1)
    legend_top = top + sum(row_heights) + _PAD * len(row_heights)
    height = legend_top + (len(Tissue) + len(notes)) * small_line + _PAD

    indices = np.zeros((height, width), dtype=np.uint8)
    text = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(text)
    for i, words in enumerate(caption):
        draw.text((_PAD, _PAD + i * line), words, font=font, fill=255)
    for column, name in enumerate(columns):
        x0 = _LABEL_WIDTH + column * (column_width + _PAD)
        draw.text((x0 + column_width / 2, top - line), name, font=font, fill=255, anchor="mt")
    y = top
    for plane, panels, rows in zip(Plane, grid, row_heights):
        draw.text((_PAD, y + 2), plane.value, font=small, fill=255)
        for column, pixels in enumerate(panels):
            x0 = _LABEL_WIDTH + column * (column_width + _PAD) + (column_width - pixels.shape[1]) // 2
            indices[y : y + rows, x0 : x0 + pixels.shape[1]] = pixels
            _edge_letters(draw, small, plane, x0, y, pixels.shape)
        y += rows + _PAD
    y = legend_top
    for tissue in Tissue:
        indices[y + 2 : y + 2 + _SWATCH, _PAD : _PAD + _SWATCH] = swatch_index(tissue)
        draw.text((_PAD + _SWATCH + _PAD, y), TISSUE_NAMES[tissue], font=small, fill=255)
        y += small_line
    for words in notes:
        draw.text((_PAD, y), words, font=small, fill=255)
        y += small_line
    coverage = np.asarray(text)
    drawn = coverage > 0
    indices[drawn] = np.rint(coverage[drawn] * ((LEVELS - 1) / 255.0)).astype(np.uint8)
    return palette_image(indices, alpha)


def _edge_letters(draw: ImageDraw.ImageDraw, font, plane: Plane, x0: int, y0: int, shape: tuple[int, int]) -> None:
    """R/L/A/P/S/I at the middle of a panel's edges, inside it."""
    left, right, top, bottom = _EDGE_LETTERS[plane]
    rows, columns = shape
    draw.text((x0 + 2, y0 + rows / 2), left, font=font, fill=255, anchor="lm")
    draw.text((x0 + columns - 2, y0 + rows / 2), right, font=font, fill=255, anchor="rm")
    draw.text((x0 + columns / 2, y0 + 1), top, font=font, fill=255, anchor="mt")
    draw.text((x0 + columns / 2, y0 + rows - 1), bottom, font=font, fill=255, anchor="mb")


def thumbnail(screen: Screen, alpha: float = OVERLAY_ALPHA, size: int = _THUMBNAIL_SIZE) -> Image.Image:
    """A small RGB picture for the report's table: the axial plane with the prediction (else the reference)."""
    tissues = screen.prediction if screen.prediction is not None else screen.reference
    index = _guide_slices(screen)[Plane.AXIAL]
    image = palette_image(panel(screen, Plane.AXIAL, index, tissues), alpha).convert("RGB")
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    return image
