"""Pictures of a prepared case: each sequence with the atlas' edges over it, and the brain mask's outline
over the reference with its skull.

Edges rather than a blend, so that a misregistration of a few millimetres shows as contours off the
anatomy. Drawn only when Pillow (the ``report`` extra) is installed; otherwise the record lists none.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..labels import Modality

__all__ = ["draw_pictures"]

EDGE_RGB = (255, 40, 40)
MASK_RGB = (40, 200, 255)


def _grey(array: np.ndarray) -> np.ndarray:
    inside = array[array > 0]
    top = float(np.percentile(inside, 99)) if inside.size else 1.0
    return (np.clip(array / max(top, 1e-6), 0, 1) * 255).astype(np.uint8)


def _edges(volume: np.ndarray) -> np.ndarray:
    """The strongest 3D intensity edges of a volume: its outline and the largest structures (ventricles)."""
    magnitude = np.sqrt(sum(g**2 for g in np.gradient(volume.astype(np.float32))))
    inside = magnitude[volume > 0]
    return magnitude > (np.percentile(inside, 92) if inside.size else np.inf)


def _planes(volume: np.ndarray) -> list[np.ndarray]:
    """Middle axial, coronal and sagittal slices of a (z, y, x) array, head up, same height."""
    z, y, x = (s // 2 for s in volume.shape)
    slices = [volume[z], np.flipud(volume[:, y, :]), np.flipud(volume[:, :, x])]
    height = max(s.shape[0] for s in slices)
    return [np.pad(s, ((0, height - s.shape[0]), (0, 0))) for s in slices]


def _panel(background: np.ndarray, overlay: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    rows = []
    for grey, marks in zip(_planes(_grey(background)), _planes(overlay)):
        picture = np.repeat(grey[..., None], 3, axis=-1)
        picture[marks] = rgb
        rows.append(picture)
    return np.concatenate(rows, axis=1)


def _save(picture: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_path(path, suffix=".png") as temporary:
        Image.fromarray(picture).save(temporary, format="PNG")


def draw_pictures(folder: Path, atlas, on_atlas: dict[Modality, object], mask, reference) -> list[str]:
    """Write ``<sequence>_on_atlas.png`` for each sequence and ``brain_mask.png`` into ``folder``.

    Args:
        folder: where to write.
        atlas: the atlas template (its edges are drawn over each sequence).
        on_atlas: the prepared sequences on the atlas grid.
        mask: the brain mask on the atlas grid.
        reference: the reference sequence on the atlas grid before masking, under the mask's outline.

    Returns:
        The file names written (empty without Pillow).
    """
    if importlib.util.find_spec("PIL") is None:
        return []
    import SimpleITK as sitk

    atlas_array = sitk.GetArrayFromImage(atlas)
    atlas_edges = _edges(atlas_array)
    names = []
    for sequence, image in on_atlas.items():
        name = f"{sequence.value}_on_atlas.png"
        _save(_panel(sitk.GetArrayFromImage(image), atlas_edges, EDGE_RGB), folder / name)
        names.append(name)
    mask_array = sitk.GetArrayFromImage(mask).astype(bool)
    boundary = mask_array ^ _eroded(mask_array)
    _save(_panel(sitk.GetArrayFromImage(reference), boundary, MASK_RGB), folder / "brain_mask.png")
    names.append("brain_mask.png")
    return names


def _eroded(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_erosion(mask, iterations=2)
