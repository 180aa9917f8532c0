"""One case's pictures from disk: read the background, the prediction and the reference, draw, write.

:func:`render_case` is the unit of work a process pool runs per case; it never raises for a bad case
but returns the error in its result, so one unreadable file never stops a report.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import write_bytes_atomic
from ..boxes import bounding_box, whole
from ..cases import Case, Layout
from ..errors import BratsxError, CaseError
from ..geometry import Geometry
from ..imageio import AFFINE_TOLERANCE, label_convention, load_case, prediction_convention, read_label_file
from ..labels import CLASS_CONVENTION, LabelConvention, Modality, convert_labels
from .gif import flythrough_gif
from .options import RenderOptions
from .overlay import CaseVolumes, figure, screen_volumes, thumbnail, tissue_volumes_ml, touches_border

__all__ = ["FIGURE_NAME", "GIF_NAME", "THUMBNAIL_NAME", "CaseImages", "load_volumes", "png_bytes",
           "render_case"]

FIGURE_NAME = "overlay.png"
THUMBNAIL_NAME = "thumbnail.png"
GIF_NAME = "axial.gif"
#: Names shown for the background modalities (as radiologists write them).
MODALITY_NAMES = {Modality.FLAIR: "FLAIR", Modality.T1: "T1", Modality.T1CE: "T1ce", Modality.T2: "T2"}


@dataclass(frozen=True)
class CaseImages:
    """What drawing one case produced.

    Attributes:
        case_id: the case.
        figure: the overlay PNG, thumbnail PNG and fly-through GIF written (``None`` when not).
        volumes_ml: WT/TC/ET volumes of the prediction (mL), when one was read.
        touches_border: whether the predicted tumour reaches a face of the volume.
        seconds: time spent on the case (reading, drawing, writing).
        error: why nothing was drawn.
    """

    case_id: str
    figure: Path | None = None
    thumbnail: Path | None = None
    gif: Path | None = None
    volumes_ml: dict[str, float] | None = None
    touches_border: bool | None = None
    seconds: float = 0.0
    error: str | None = None


def _check_grid(case_id: str, path: Path, geometry: Geometry, reference: Geometry) -> None:
    if geometry.shape != reference.shape or float(np.abs(geometry.affine - reference.affine).max()) > AFFINE_TOLERANCE:
        raise CaseError(case_id, f"grid {geometry.shape} {geometry.orientation} differs from the images' "
                        f"{reference.shape} {reference.orientation}; was it made from this case?", path)


def _tissues(path: Path, case: Case, convention: LabelConvention | None, grid: Geometry, *,
             prediction: bool) -> np.ndarray:
    """A label file as a canonical tissue map (values :class:`~bratsx.labels.Tissue`), checked against the grid."""
    data, geometry = read_label_file(path, case.case_id)
    _check_grid(case.case_id, path, geometry, grid)
    # Unless given, the values decide the set among the case's candidates; all lie in the box around the
    # non-zero voxels, which is far faster to scan.
    read = prediction_convention if prediction else label_convention
    convention = read(data[bounding_box(data != 0) or whole(data.shape)], case.case_id, path, convention,
                      case.label_sets)
    return convert_labels(grid.to_canonical(data), convention, CLASS_CONVENTION)


def _background(case: Case, modality: Modality) -> tuple[np.ndarray, Geometry]:
    """The background modality, canonical, with the case's geometry (only that file is read)."""
    if case.layout is Layout.MSD:  # one 4D file holds every modality
        loaded = load_case(case, with_label=False)
        return loaded.image[loaded.channels.index(modality)], loaded.geometry
    if case.problems:
        raise case.problems[0]
    data, geometry = read_label_file(case.images[modality], case.case_id)
    return geometry.to_canonical(data), geometry


def load_volumes(case: Case, prediction: Path | np.ndarray | None,
                 options: RenderOptions = RenderOptions()) -> CaseVolumes:
    """Read what a case's pictures need: one background modality, the prediction and the reference.

    Label files in any convention become tissue maps, so every convention gets the same colours.

    Args:
        case: the input case (from :func:`bratsx.cases.discover_cases`).
        prediction: its predicted label file, or its canonical tissue map already in memory (values
            :class:`~bratsx.labels.Tissue`, e.g. from :func:`~bratsx.labels.convert_labels` to ``CLASS_CONVENTION``).
        options: the background modality and the predictions' convention.

    Returns:
        The canonical volumes.

    Raises:
        CaseError: a file is unreadable, its label values fit no convention, or its grid differs from the images'.
    """
    background, geometry = _background(case, options.background)
    # --labels names the predictions' set, and the reference's where the case's layout or id leaves it open
    given = options.convention
    if isinstance(prediction, np.ndarray):
        if prediction.shape != background.shape:
            raise CaseError(case.case_id, f"the prediction's shape {prediction.shape} differs from the images' "
                            f"{background.shape}")
        predicted = prediction
    else:
        predicted = None if prediction is None else _tissues(prediction, case, given, geometry, prediction=True)
    reference = None if case.label is None else _tissues(case.label, case, given if len(case.label_sets) > 1
                                                         else None, geometry, prediction=False)
    return CaseVolumes(case.case_id, background, predicted, reference, geometry.canonical_spacing,
                       MODALITY_NAMES[options.background])


def png_bytes(image: Image.Image) -> bytes:
    """A picture as PNG file bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def render_case(case_id: str, case: Case | None, prediction: Path | np.ndarray | None, out_dir: Path,
                options: RenderOptions = RenderOptions()) -> CaseImages:
    """Draw one case into ``out_dir``: the overlay PNG, a thumbnail and (with ``options.gif``) the fly-through.

    Args:
        case_id: the case.
        case: its input case, or ``None`` when none was found (nothing is drawn).
        prediction: its predicted label file, or its canonical tissue map in memory (see :func:`load_volumes`),
            or ``None`` (the background and reference are drawn).
        out_dir: the case's picture folder (created).
        options: how to draw.

    Returns:
        The files written and what was measured, or the error.
    """
    started = time.perf_counter()
    if case is None:
        return CaseImages(case_id, error=f"case {case_id}: no input case of this id was found, so no picture")
    try:
        volumes = load_volumes(case, prediction, options)
        screen = screen_volumes(volumes)
        out_dir.mkdir(parents=True, exist_ok=True)
        figure_path = write_bytes_atomic(out_dir / FIGURE_NAME, png_bytes(figure(volumes, screen, options.alpha)))
        thumbnail_path = write_bytes_atomic(out_dir / THUMBNAIL_NAME, png_bytes(thumbnail(screen, options.alpha)))
        gif = flythrough_gif(screen, options.alpha) if options.gif else None
        gif_path = write_bytes_atomic(out_dir / GIF_NAME, gif) if gif is not None else None
    except (BratsxError, OSError) as error:
        return CaseImages(case_id, seconds=time.perf_counter() - started, error=str(error))
    predicted = volumes.prediction
    return CaseImages(
        case_id, figure_path, thumbnail_path, gif_path,
        None if predicted is None else tissue_volumes_ml(screen.prediction, volumes.spacing),
        None if predicted is None else touches_border(predicted),
        time.perf_counter() - started,
    )
