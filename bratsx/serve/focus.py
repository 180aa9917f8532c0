"""Where the viewer opens: on the tumour, not the volume's centre.

The point is a voxel of the tumour itself (the labelled voxel nearest the labels' centroid, so that
a ring-shaped or split tumour still opens on tumour), given in world millimetres through the file's
affine, which is what the viewer places its crosshair by.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..imageio import read_label_file

__all__ = ["focus_of_labels", "tumour_focus_mm"]


def tumour_focus_mm(path: Path, case_id: str) -> list[float] | None:
    """The world position (mm, the file's affine) of the tumour voxel nearest the centroid of every labelled voxel.

    Args:
        path: a label map (a prediction or a reference).
        case_id: for messages.

    Returns:
        ``[x, y, z]`` in mm, or ``None`` when nothing is labelled.

    Raises:
        CaseError: the file cannot be read as a label map.
    """
    data, geometry = read_label_file(path, case_id)
    return focus_of_labels(data, geometry.affine)


def focus_of_labels(labels: np.ndarray, affine: np.ndarray) -> list[float] | None:
    """:func:`tumour_focus_mm` of a label map already in memory, stored as ``affine`` says (``None``: nothing
    labelled)."""
    tumour = np.argwhere(labels > 0)
    if not len(tumour):
        return None
    nearest = tumour[np.argmin(((tumour - tumour.mean(axis=0)) ** 2).sum(axis=1))]
    return [float(v) for v in (affine @ np.append(nearest, 1.0))[:3]]
