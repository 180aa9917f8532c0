"""Overlay pictures checked pixel by pixel: colours where the labels are, orientation, square pixels."""

import numpy as np
import pytest

from bratsx.labels import Tissue
from bratsx.report.colors import LEVELS, OVERLAY_ALPHA, TISSUE_COLORS, swatch_index
from bratsx.report.overlay import (
    CaseVolumes,
    Plane,
    Screen,
    figure,
    palette_image,
    panel,
    screen_volumes,
    tissue_volumes_ml,
    touches_border,
    tumour_slices,
)

SHAPE = (12, 16, 20)  # canonical (z, y, x) = (S, P, L)

#: The label array as it must appear on screen, written out per plane (radiological convention).
ON_SCREEN = {
    Plane.AXIAL: lambda volume, i: volume[i],  # rows anterior to posterior, columns right to left
    Plane.CORONAL: lambda volume, i: volume[::-1, i],  # rows superior to inferior, columns right to left
    Plane.SAGITTAL: lambda volume, i: volume[::-1, :, i],  # rows superior to inferior, columns anterior to posterior
}
CROSSING = {Plane.AXIAL: 6, Plane.CORONAL: 6, Plane.SAGITTAL: 7}


def labelled_case(shape=SHAPE, spacing=(1.0, 1.0, 1.0)) -> CaseVolumes:
    """Non-zero background everywhere (nothing cropped), an asymmetric tumour of all three tissues."""
    background = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) % 97) + 1.0
    tissues = np.zeros(shape, np.uint8)
    tissues[4:8, 5:9, 6:10] = Tissue.EDEMA
    tissues[5:7, 6:8, 7:9] = Tissue.NECROTIC_CORE
    tissues[6, 6:8, 12:14] = Tissue.ENHANCING
    return CaseVolumes("case", background, tissues, None, spacing)


def rgb(indices: np.ndarray, alpha: float) -> np.ndarray:
    return np.asarray(palette_image(indices, alpha).convert("RGB")).astype(int)


@pytest.mark.parametrize("plane", list(Plane))
def test_each_label_colour_appears_where_that_label_is_and_nowhere_else(plane):
    volumes = labelled_case()
    screen = screen_volumes(volumes)
    pixels = rgb(panel(screen, plane, CROSSING[plane], screen.prediction), alpha=1.0)
    expected = ON_SCREEN[plane](volumes.prediction, CROSSING[plane])
    assert pixels.shape[:2] == expected.shape
    for tissue in Tissue:
        np.testing.assert_array_equal(np.all(pixels == TISSUE_COLORS[tissue], axis=-1), expected == tissue)
    outside = pixels[expected == 0]
    assert (outside[:, 0] == outside[:, 1]).all() and (outside[:, 1] == outside[:, 2]).all()


@pytest.mark.parametrize("plane", list(Plane))
def test_blended_labels_keep_their_tissue_block_and_the_background_stays_grey(plane):
    volumes = labelled_case()
    screen = screen_volumes(volumes)
    indices = panel(screen, plane, CROSSING[plane], screen.prediction)
    expected = ON_SCREEN[plane](volumes.prediction, CROSSING[plane])
    np.testing.assert_array_equal(indices // LEVELS, expected)
    pixels = rgb(indices, OVERLAY_ALPHA)
    grey = (pixels[..., 0] == pixels[..., 1]) & (pixels[..., 1] == pixels[..., 2])
    np.testing.assert_array_equal(grey, expected == 0)


def test_anisotropic_voxels_are_shown_with_square_pixels():
    volumes = labelled_case(spacing=(2.0, 1.0, 1.0))  # 2 mm slices along z
    screen = screen_volumes(volumes)
    coronal = panel(screen, Plane.CORONAL, 6, screen.prediction)
    sagittal = panel(screen, Plane.SAGITTAL, 7, screen.prediction)
    axial = panel(screen, Plane.AXIAL, 6, screen.prediction)
    assert coronal.shape == (2 * SHAPE[0], SHAPE[2])
    assert sagittal.shape == (2 * SHAPE[0], SHAPE[1])
    assert axial.shape == (SHAPE[1], SHAPE[2])
    np.testing.assert_array_equal(coronal // LEVELS, np.repeat(volumes.prediction[::-1, 6], 2, axis=0))


def test_planes_follow_the_radiological_convention():
    levels = np.zeros(SHAPE, np.uint8)
    levels[9:11, 1:3, 1:3] = LEVELS - 1  # superior (high z), anterior (low y), patient's right (low x)
    screen = Screen(levels, None, None, (1.0, 1.0, 1.0))
    for plane, index in ((Plane.AXIAL, 10), (Plane.CORONAL, 2), (Plane.SAGITTAL, 2)):
        rows, columns = np.nonzero(panel(screen, plane, index, None))
        image = panel(screen, plane, index, None)
        assert rows.max() < image.shape[0] / 2, f"{plane.value}: marker not in the upper half"
        assert columns.max() < image.shape[1] / 2, f"{plane.value}: marker not in the left half"


def test_the_figure_holds_label_colours_only_in_its_enlarged_label_panels_and_legend():
    shape = (40, 48, 48)
    background = np.full(shape, 100.0, np.float32)
    tissues = np.zeros(shape, np.uint8)
    tissues[16:24, 18:28, 20:30] = Tissue.EDEMA
    tissues[18:22, 20:26, 22:28] = Tissue.NECROTIC_CORE
    tissues[20, 22:24, 24:26] = Tissue.ENHANCING
    volumes = CaseVolumes("case", background, tissues, tissues.copy(), (1.0, 1.0, 1.0))
    screen = screen_volumes(volumes)
    slices = tumour_slices(screen.prediction)
    indices = np.asarray(figure(volumes, screen))
    zoom = 4  # a small volume is enlarged: 48 voxels (plus the crop) to at least 160 pixels, 4 x 4 per voxel
    for tissue in Tissue:
        in_panels = sum(np.count_nonzero(ON_SCREEN[p](screen.prediction, slices[p]) == tissue) for p in Plane)
        assert np.count_nonzero(indices // LEVELS == tissue) == 2 * zoom**2 * in_panels  # prediction and reference
        assert np.count_nonzero(indices == swatch_index(tissue)) == 100  # one 10x10 legend swatch


def test_tumour_slices_cross_the_largest_tumour_area():
    tissues = np.zeros((20, 20, 20), np.uint8)
    tissues[3, 2:12, 2:12] = Tissue.EDEMA  # largest axial slice: z = 3
    tissues[2:6, 15, 2:4] = Tissue.EDEMA
    slices = tumour_slices(tissues)
    assert slices[Plane.AXIAL] == 3
    assert slices[Plane.CORONAL] == int(np.argmax((tissues > 0).sum(axis=(0, 2))))
    assert slices[Plane.SAGITTAL] == 2


def test_region_volumes_and_border_contact():
    tissues = np.zeros((10, 10, 10), np.uint8)
    tissues[2:4, 2:4, 2:4] = Tissue.EDEMA  # 8 voxels
    tissues[5, 5, 5] = Tissue.NECROTIC_CORE
    tissues[6, 6, 6:8] = Tissue.ENHANCING
    volumes = tissue_volumes_ml(tissues, (2.0, 1.0, 1.0))  # 2 uL per voxel
    assert volumes == pytest.approx({"WT": 11 * 0.002, "TC": 3 * 0.002, "ET": 2 * 0.002})
    assert not touches_border(tissues)
    tissues[9, 0, 4] = Tissue.EDEMA
    assert touches_border(tissues)
