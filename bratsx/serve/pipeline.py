"""What a job does: :func:`~bratsx.runtime.segment.segment_case` on the uploaded case, then its files.

A job's folder ends up holding, beside the upload::

    out/segmentation.nii.gz   labels in the input's own geometry (as ``bratsx infer`` writes them)
    out/result.json           volumes per region, metrics against an uploaded reference, flags, timings
    out/pictures/overlay.png  the report's overlay picture (when Pillow, the ``report`` extra, is installed)

The overlay picture and the flags come from :mod:`bratsx.report`, so the page shows what the batch
report shows for the same case.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ..atomic import write_bytes_atomic
from ..cases import Case, Layout
from ..imageio import write_label_map
from ..labels import MODALITY_ORDER, REGION_ORDER, LabelConvention, Tissue
from ..metrics import volume_ml
from ..report.colors import TISSUE_COLORS, TISSUE_NAMES
from ..report.flags import Evidence, compute_flags, flag_explanations
from ..runtime.models import OpenedModel
from ..runtime.segment import segment_case
from .focus import tumour_focus_mm
from .jobs import Job, Progress

__all__ = ["OUTPUT_FOLDER", "OVERLAY_NAME", "RESULT_NAME", "SEGMENTATION_NAME", "describe_flags", "json_safe",
           "label_legend", "model_description", "output_file", "segment_job", "sequence_frames"]

OUTPUT_FOLDER = "out"
SEGMENTATION_NAME = "segmentation.nii.gz"
RESULT_NAME = "result.json"
PICTURES_FOLDER = "pictures"
OVERLAY_NAME = "overlay.png"


def sequence_frames(case: Case | None) -> dict[str, int | None]:
    """The sequences the viewer can show as background, each with its frame in a 4D file (MSD) or ``None``."""
    if case is None:
        return {}
    four_d = case.layout is Layout.MSD
    return {m.value: (i if four_d else None) for i, m in enumerate(MODALITY_ORDER) if m in case.images}


def output_file(job_folder: Path, name: str) -> Path:
    """A job's output file (``SEGMENTATION_NAME``, ``RESULT_NAME`` or ``OVERLAY_NAME``)."""
    out = job_folder / OUTPUT_FOLDER
    return out / PICTURES_FOLDER / name if name == OVERLAY_NAME else out / name


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON has no such numbers; an HD95 may be
    infinite)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def label_legend(convention: LabelConvention) -> list[dict[str, Any]]:
    """Each tissue's label value in ``convention``, short name, description and colour (the report's table)."""
    return [{"value": convention.tissue_values[tissue], "tissue": tissue.name.lower(),
             "name": TISSUE_NAMES[tissue].split(":")[0], "description": TISSUE_NAMES[tissue],
             "color": list(TISSUE_COLORS[tissue])} for tissue in Tissue]


def describe_flags(evidence: list[Evidence]) -> dict[str, list[dict[str, str]]]:
    """The report's flags of each case, with what each means."""
    explained = flag_explanations()
    return {case_id: [{"kind": f.kind.value, "detail": f.detail, "explanation": explained[f.kind]} for f in flags]
            for case_id, flags in compute_flags(evidence).items()}


def model_description(opened: OpenedModel) -> dict[str, Any]:
    """What the page says about the model: file, backend, device, precision, patch, validation Dice."""
    backend = opened.backend
    return {"file": opened.file.name, "folder": opened.file.parent.name, "backend": backend.name,
            "device": backend.device, "precision": backend.precision, "patch": list(opened.contract.patch_size),
            "validation_dice": opened.contract.validation_dice}


def _overlay(job: Job, segmentation: Path) -> tuple[bool, str | None, bool | None]:
    """Draw the report's overlay picture: (drawn, why not, whether the tumour touches the volume's border)."""
    try:
        from ..report.render import render_case
    except ImportError:
        return False, "no overlay picture: Pillow is not installed (pip install 'bratsx[report]')", None
    images = render_case(job.case.case_id, job.case, segmentation, job.folder / OUTPUT_FOLDER / PICTURES_FOLDER)
    return images.figure is not None, images.error, images.touches_border


def segment_job(job: Job, model: OpenedModel, progress: Progress) -> dict[str, Any]:
    """Segment a job's case with ``model`` and write its files (see the module docstring).

    Args:
        job: the job (its case and options).
        model: the open model.
        progress: told the stage and the tiles done.

    Returns:
        The result the page shows (also written to ``result.json``).

    Raises:
        CaseError: the case cannot be loaded (the job fails with this message).
    """
    progress("loading", 0, 0)
    segmentation = segment_case(job.case, [model.backend], model.contract, job.options,
                                on_tiles=lambda done, total: progress("inference", done, total))
    progress("writing", 0, 0)
    started = time.perf_counter()
    seg_path = output_file(job.folder, SEGMENTATION_NAME)
    seg_path.parent.mkdir(parents=True, exist_ok=True)
    write_label_map(segmentation.labels, segmentation.loaded.geometry, seg_path)
    seconds = {**segmentation.seconds, "write": time.perf_counter() - started}
    started = time.perf_counter()
    drawn, overlay_error, touches_border = _overlay(job, seg_path)
    seconds["overlay"] = time.perf_counter() - started
    spacing = segmentation.loaded.geometry.canonical_spacing
    volumes = {region.value: volume_ml(segmentation.regions[i], spacing) for i, region in enumerate(REGION_ORDER)}
    metrics = segmentation.metrics or {}
    dice = {k.removeprefix("dice_"): v for k, v in metrics.items() if k.startswith("dice_")}
    case_id = job.case.case_id
    geometry = segmentation.loaded.geometry
    result = json_safe({
        "case_id": case_id,
        "convention": segmentation.convention.value,
        "labels": label_legend(segmentation.convention),
        "volumes_ml": volumes,
        "metrics": segmentation.metrics,
        "metrics_error": segmentation.metrics_error,
        "flags": describe_flags([Evidence(case_id, False, volumes, touches_border, dice)])[case_id],
        "overlay": drawn,
        "overlay_error": overlay_error,
        "seconds": seconds,
        "shape": list(geometry.shape),
        "spacing": list(geometry.spacing),
        "orientation": geometry.orientation,
        "focus_mm": tumour_focus_mm(seg_path, case_id),
        "model": model_description(model),
    })
    write_bytes_atomic(output_file(job.folder, RESULT_NAME), (json.dumps(result, indent=1) + "\n").encode())
    return result
