"""What the page shows of a job, a model and a reviewed case: built from the job's record and its labels in
memory (:mod:`~bratsx.serve.job`), never by reading the segmentation back.

A job's result is its case's record (:class:`~bratsx.runtime.records.CaseRecord`: volumes, metrics, timings)
plus what only the web app shows: the label legend, the report's QC flags and overlay picture (drawn
from the labels in memory by :mod:`bratsx.report`, so the page shows what the batch report shows for
the same case) and the grid. The result download is the record itself: one record format, read by
``bratsx summarize``, ``report`` and review alike.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ..cases import Case, Layout
from ..extras import MissingExtraError, optional_import
from ..labels import CLASS_CONVENTION, MODALITY_ORDER, LabelConvention, Tissue, convert_labels
from ..report.colors import TISSUE_COLORS, TISSUE_NAMES
from ..report.flags import Evidence, compute_flags, flag_explanations
from ..runtime.infer import CaseOutput, output_path
from ..runtime.records import record_path
from ..runtime.runner import Runner
from .focus import focus_of_labels
from .job import NATIVE_ZIP, JobOutcome, job_output
from .jobs import Job

__all__ = ["DICOM_SEG_NAME", "NATIVE_NAME", "OVERLAY_NAME", "RESULT_NAME", "SEGMENTATION_NAME",
           "describe_flags", "job_result", "json_safe",
           "label_legend", "model_description", "output_file", "sequence_frames"]

SEGMENTATION_NAME = "segmentation"
RESULT_NAME = "record"
PICTURES_FOLDER = "pictures"
OVERLAY_NAME = "overlay.png"
#: A prepared job's native-grid segmentations (zip) and its DICOM-SEG (DICOM inputs).
NATIVE_NAME = "native"
DICOM_SEG_NAME = "dicom-seg"


def sequence_frames(case: Case | None) -> dict[str, int | None]:
    """The sequences the viewer can show as background, each with its frame in a 4D file (MSD) or ``None``."""
    if case is None:
        return {}
    four_d = case.layout is Layout.MSD
    return {m.value: (i if four_d else None) for i, m in enumerate(MODALITY_ORDER) if m in case.images}


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


def model_description(runner: Runner) -> dict[str, Any]:
    """What the page says about the model: file, backend, device, precision, patch, validation Dice."""
    identity, contract = runner.identity, runner.contract
    file = Path(identity["files"][0])
    return {"file": file.name, "folder": file.parent.name, "backend": identity["backend"],
            "device": identity["device"], "precision": identity["precision"], "patch": list(contract.patch_size),
            "validation_dice": contract.validation_dice}


def output_file(job_folder: Path, case_id: str, name: str) -> Path:
    """A job's output file: ``SEGMENTATION_NAME`` (the case's label map), ``RESULT_NAME`` (its record),
    ``OVERLAY_NAME``, and for raw scans ``NATIVE_NAME`` (the native-grid segmentations, zipped) and
    ``DICOM_SEG_NAME``."""
    from ..prepare.batch import NATIVE_FOLDER

    out = job_output(job_folder)
    return {SEGMENTATION_NAME: output_path(out, case_id), RESULT_NAME: record_path(out, case_id),
            OVERLAY_NAME: out / PICTURES_FOLDER / OVERLAY_NAME, NATIVE_NAME: out / NATIVE_ZIP,
            DICOM_SEG_NAME: out / NATIVE_FOLDER / f"{case_id}_seg.dcm"}[name]


def _prepared(outcome: JobOutcome) -> dict[str, Any] | None:
    """What the page shows of a raw case's preparation and of its segmentation on the native grids."""
    if outcome.prepared is None or outcome.native is None:
        return None
    record = outcome.prepared
    return {"sequences": {name: info["label"] for name, info in record["sequences"].items()},
            "registration": record["registration"], "brain_ml": record["brain_ml"],
            "mask_check": record.get("mask_check"), "seconds": record["seconds"],
            "native_grids": sorted(outcome.native.segmentations), "dicom_seg": outcome.native.dicom_seg is not None,
            "native_volumes_ml": outcome.native.volumes_ml}


def _overlay(job: Job, output: CaseOutput | None) -> tuple[bool, str | None, bool | None]:
    """Draw the report's overlay picture from the labels in memory: (drawn, why not, whether the tumour
    touches the volume's border)."""
    if output is None or output.labels is None or output.convention is None:
        return False, "no overlay picture: the case was not segmented in this job", None
    try:
        render_case = optional_import("bratsx.report.render", "report", purpose="the overlay picture",
                                      attribute="render_case")
    except MissingExtraError as missing:
        return False, f"no overlay picture: {missing}", None
    tissues = convert_labels(output.labels, output.convention, CLASS_CONVENTION)
    images = render_case(job.case.case_id, job.case, tissues, job_output(job.folder) / PICTURES_FOLDER)
    return images.figure is not None, images.error, images.touches_border


def job_result(job: Job, outcome: JobOutcome, model: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of a finished job.

    Args:
        job: the job.
        outcome: its record and output (see :func:`~bratsx.serve.job.run_job`).
        model: the model's description (see :func:`model_description`).
    """
    record = outcome.record
    started = time.perf_counter()
    drawn, overlay_error, touches_border = _overlay(job, outcome.output)
    seconds = {**record.seconds, "overlay": time.perf_counter() - started}
    metrics = record.metrics or {}
    dice = {k.removeprefix("dice_"): v for k, v in metrics.items() if k.startswith("dice_")}
    volumes = record.volumes_ml or {}
    convention = outcome.output.convention if outcome.output else LabelConvention(record.settings["convention"])
    geometry = outcome.output.geometry if outcome.output else None
    result = json_safe({
        "case_id": record.case_id,
        "convention": convention.value,
        "labels": label_legend(convention),
        "volumes_ml": volumes,
        "metrics": record.metrics,
        "metrics_error": record.metrics_error,
        "flags": describe_flags([Evidence(record.case_id, False, volumes, touches_border, dice)])[record.case_id],
        "overlay": drawn,
        "overlay_error": overlay_error,
        "seconds": seconds,
        "shape": list(geometry.shape) if geometry else None,
        "spacing": list(geometry.spacing) if geometry else None,
        "orientation": geometry.orientation if geometry else None,
        "focus_mm": focus_of_labels(geometry.from_canonical(outcome.output.labels), geometry.affine)
        if geometry and outcome.output.labels is not None else None,
        "model": model,
        "prepared": _prepared(outcome),
    })
    return result
