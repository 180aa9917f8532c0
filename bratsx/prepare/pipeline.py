"""One raw case to a BraTS-ready case: identify, read, co-register, skull-strip, register to the atlas, resample.

The order of stages, and why:

1. **identify** the four sequences (:mod:`.identify`); a missing or doubled sequence stops here.
2. **read** them with their scanner geometry (:func:`.ingest.read_series`).
3. **co-register** each sequence rigidly to the reference (T1ce by default).
4. **skull-strip** on the T1 moved onto a 1 mm grid around the reference (deepbet is a T1 network;
   :mod:`.skullstrip`), and check the brain's volume and that the mask cuts off no tumour
   (:mod:`.maskcheck`, on the FLAIR moved onto the same grid).
5. **atlas**: the reference's brain affinely onto the atlas' brain (the bundled template is
   skull-stripped, so brains are registered to brains).
6. **resample** every sequence through its rigid and the atlas transforms at once (one interpolation,
   linear) onto the atlas grid, zero outside the brain, and write the case in the BraTS 2018 layout,
   with ``prepare/``: the record (``prepare.json``), its page (``report.html``), transforms, mask, pictures.

Everything of one case is written into a staging folder that replaces ``OUT/<case id>`` only when
the case succeeded, so a failed case leaves nothing behind and the next case still runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_folder
from ..errors import CaseError
from ..extras import optional_import
from ..labels import MODALITY_ORDER, Modality
from .atlas import Atlas, load_atlas
from .identify import Identification, assign_sequences
from .ingest import RawCase, Series, discover_raw_cases, read_series
from .maskcheck import MAX_CUT_OFF_ML
from .register import affine_to_atlas, rigid_to_reference
from .report import write_prepare_report

__all__ = ["PrepareOptions", "PreparedCase", "prepare_case", "prepare_input", "RECORD_NAME", "RECORD_VERSION",
           "require_prepare_extra"]

log = logging.getLogger(__name__)

RECORD_NAME = "prepare.json"
RECORD_VERSION = 1
#: Sub-folder of a prepared case holding its record, transforms, mask and pictures.
PREPARE_FOLDER = "prepare"


@dataclass(frozen=True, kw_only=True)
class PrepareOptions:
    """How to prepare raw cases.

    Attributes:
        atlas: target space (``sri24``: the BraTS grid; ``mni152``).
        skull_strip: ``"deepbet"`` (bundled network on ONNX Runtime), ``"synthstrip:PATH"`` (SynthStrip with
            the user's weights, :mod:`.synthstrip`) or ``"none"`` for skull-stripped inputs.
        reference: the sequence every other is registered to.
        mapping: ``--map`` overrides, series or file -> sequence.
        cache: where deepbet's exported ONNX files live (default ``~/.cache/bratsx/skullstrip``).
        pictures: draw the overlay pictures of the record (needs Pillow).
        max_cut_off_ml: lesion-like tissue (mL) the skull stripper's mask may leave just outside it before the
            case stops as a tumour cut off (:mod:`~bratsx.prepare.maskcheck`).
    """

    atlas: Atlas = Atlas.SRI24
    skull_strip: str = "deepbet"
    reference: Modality = Modality.T1CE
    mapping: Mapping[str, Modality] = field(default_factory=dict)
    cache: Path | None = None
    pictures: bool = True
    max_cut_off_ml: float = MAX_CUT_OFF_ML


@dataclass(frozen=True)
class PreparedCase:
    """The outcome of one case: its folder and record, or the error that stopped it."""

    case_id: str
    folder: Path | None = None
    record: dict | None = None
    error: str = ""
    verdicts: tuple[Identification, ...] = ()


class _Clock:
    """Wall and CPU seconds per stage, in order (CPU time shows the work when other jobs share the CPU)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self._start = time.perf_counter()
        self._cpu = time.process_time()

    def lap(self, stage: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.seconds[stage] = round(now - self._start, 2)
        self.cpu_seconds[stage] = round(cpu - self._cpu, 2)
        self._start, self._cpu = now, cpu


def _geometry(image) -> dict:
    return {"size": list(image.GetSize()), "spacing": [round(s, 6) for s in image.GetSpacing()],
            "origin": [round(o, 6) for o in image.GetOrigin()],
            "direction": [round(d, 8) for d in image.GetDirection()]}


def _dicom_identifiers(series: Series) -> dict:
    if not series.is_dicom:
        return {}
    import pydicom

    first = pydicom.dcmread(series.files[0], stop_before_pixels=True)
    return {name: str(getattr(first, name, "")) for name in
            ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID", "StudyDate",
             "SeriesNumber")}


def _one_mm_grid(image):
    """An axis-aligned (LPS) 1 mm grid covering ``image``'s physical extent."""
    import SimpleITK as sitk

    size = image.GetSize()
    corners = np.array([image.TransformIndexToPhysicalPoint([int(c) for c in (i, j, k)])
                        for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)])
    low, high = corners.min(axis=0), corners.max(axis=0)
    grid = sitk.Image([int(np.ceil(h - lo)) + 1 for lo, h in zip(low, high)], sitk.sitkFloat32)
    grid.SetOrigin(low.tolist())
    return grid


def _ras_array(image) -> np.ndarray:
    """An axis-aligned LPS SimpleITK image's voxels, indexed (R, A, S) as deepbet expects."""
    import SimpleITK as sitk

    return np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0)[::-1, ::-1])


def _image_from_ras(array: np.ndarray, like):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array[::-1, ::-1].transpose(2, 1, 0)))
    image.CopyInformation(like)
    return image


def _skull_strip(case_id: str, t1_on_grid, flair_on_grid, options: PrepareOptions):
    """The brain mask on the reference's 1 mm grid, its volume (mL) and its tumour cut-off check's numbers."""
    import SimpleITK as sitk

    from .maskcheck import check_cut_off
    from .skullstrip import SYNTHSTRIP, brain_mask, default_cache, onnx_from_deepbet, plausible_mask
    from .synthstrip import onnx_from_synthstrip, synthstrip_mask

    if options.skull_strip.startswith(SYNTHSTRIP):
        network = onnx_from_synthstrip(Path(options.skull_strip[len(SYNTHSTRIP):]), options.cache or default_cache())
        mask = synthstrip_mask(_ras_array(t1_on_grid), network)
    else:
        mask = brain_mask(_ras_array(t1_on_grid), onnx_from_deepbet(options.cache))
    volume_ml = plausible_mask(case_id, mask, float(np.prod(t1_on_grid.GetSpacing())) / 1000.0)
    cut = check_cut_off(case_id, _ras_array(flair_on_grid), _ras_array(t1_on_grid), mask,
                        tuple(t1_on_grid.GetSpacing()), options.max_cut_off_ml)
    check = {"cut_off_ml": cut.cut_off_ml, "bright_inside_ml": cut.bright_inside_ml,
             "limit_ml": options.max_cut_off_ml}
    return sitk.Cast(_image_from_ras(mask.astype(np.uint8), t1_on_grid), sitk.sitkUInt8), volume_ml, check


def _composite(*transforms):
    """Transforms applied right to left (the last argument first), as SimpleITK composes them."""
    import SimpleITK as sitk

    return sitk.CompositeTransform(list(transforms))


def _write_case(staging: Path, case_id: str, on_atlas: dict[Modality, object], mask) -> None:
    import SimpleITK as sitk

    for sequence, image in on_atlas.items():
        sitk.WriteImage(image, str(staging / f"{case_id}_{sequence.value}.nii.gz"), useCompression=True)
    sitk.WriteImage(mask, str(staging / PREPARE_FOLDER / "brain_mask.nii.gz"), useCompression=True)


def prepare_case(case: RawCase, out: Path | str, options: PrepareOptions | None = None) -> PreparedCase:
    """Prepare one raw case into ``OUT/<case id>/`` (BraTS 2018 layout in atlas space + ``prepare/``).

    Args:
        case: from :func:`~bratsx.prepare.ingest.discover_raw_cases`.
        out: the output root.
        options: see :class:`PrepareOptions`.

    Returns:
        The prepared case and its record.

    Raises:
        CaseError: this case cannot be prepared (one line: what and where); nothing is written for it.
    """
    import SimpleITK as sitk

    options = options or PrepareOptions()
    out = Path(out)
    clock = _Clock()
    if case.problems:
        raise CaseError(case.case_id, "; ".join(case.problems), case.source)
    chosen, verdicts = assign_sequences(case.case_id, case.series, options.mapping)
    clock.lap("identify")
    images = {sequence: read_series(series, case.case_id) for sequence, series in chosen.items()}
    clock.lap("read")
    reference = images[options.reference]
    rigid, quality = {}, {}
    for sequence in MODALITY_ORDER:
        if sequence is options.reference:
            continue
        found = rigid_to_reference(case.case_id, f"{sequence.value} to {options.reference.value}", reference,
                                   images[sequence])
        rigid[sequence] = found.transform
        quality[sequence.value] = {"mi_before": round(found.mi_before, 4), "mi_after": round(found.mi_after, 4)}
    clock.lap("co-register")
    grid = _one_mm_grid(reference)
    identity = sitk.Euler3DTransform()
    t1_on_grid = sitk.Resample(images[Modality.T1], grid, rigid.get(Modality.T1, identity), sitk.sitkLinear, 0.0)
    mask_check = None  # the input's own brain is not checked: only a skull stripper's guess is
    if options.skull_strip == "none":
        mask = sitk.Cast(t1_on_grid > 0, sitk.sitkUInt8)
        brain_ml = float(np.count_nonzero(sitk.GetArrayViewFromImage(mask))) / 1000.0
    else:
        flair_on_grid = sitk.Resample(images[Modality.FLAIR], grid, rigid.get(Modality.FLAIR, identity),
                                      sitk.sitkLinear, 0.0)
        mask, brain_ml, mask_check = _skull_strip(case.case_id, t1_on_grid, flair_on_grid, options)
    clock.lap("skull-strip")
    atlas = load_atlas(options.atlas)
    reference_on_grid = sitk.Resample(reference, grid, identity, sitk.sitkLinear, 0.0)
    brain = sitk.Mask(reference_on_grid, mask)
    to_atlas = affine_to_atlas(case.case_id, atlas.image, brain, atlas.mask)
    quality[f"{options.reference.value} to atlas"] = {"mi_before": round(to_atlas.mi_before, 4),
                                                      "mi_after": round(to_atlas.mi_after, 4)}
    clock.lap("atlas")
    mask_on_atlas = sitk.Resample(mask, atlas.image, to_atlas.transform, sitk.sitkNearestNeighbor, 0)
    on_atlas, reference_with_skull = {}, None
    for sequence in MODALITY_ORDER:
        transform = _composite(rigid[sequence], to_atlas.transform) if sequence in rigid else to_atlas.transform
        moved = sitk.Resample(images[sequence], atlas.image, transform, sitk.sitkLinear, 0.0)
        on_atlas[sequence] = sitk.Mask(moved, mask_on_atlas)
        if sequence is options.reference:
            reference_with_skull = moved  # the mask is judged against what it removed
    clock.lap("resample")
    folder = out / case.case_id
    with atomic_folder(folder) as staging:
        (staging / PREPARE_FOLDER / "transforms").mkdir(parents=True)
        transforms = {}
        for sequence, transform in rigid.items():
            name = f"transforms/{sequence.value}_to_{options.reference.value}.tfm"
            sitk.WriteTransform(transform, str(staging / PREPARE_FOLDER / name))
            transforms[sequence.value] = name
        transforms[options.reference.value + "_to_atlas"] = "transforms/reference_to_atlas.tfm"
        sitk.WriteTransform(to_atlas.transform, str(staging / PREPARE_FOLDER / "transforms/reference_to_atlas.tfm"))
        _write_case(staging, case.case_id, on_atlas, mask_on_atlas)
        pictures = []
        if options.pictures:
            from .pictures import draw_pictures

            pictures = draw_pictures(staging / PREPARE_FOLDER, atlas.image, on_atlas, mask_on_atlas,
                                     reference_with_skull)
        clock.lap("write")
        record = _record(case, options, chosen, verdicts, images, quality, transforms, atlas.source, brain_ml,
                         mask_check, pictures, clock)
        (staging / PREPARE_FOLDER / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
        write_prepare_report(staging / PREPARE_FOLDER, record)
    return PreparedCase(case.case_id, folder, record, verdicts=tuple(verdicts))


def _record(case, options, chosen, verdicts, images, quality, transforms, atlas_source, brain_ml, mask_check,
            pictures, clock: _Clock) -> dict:
    sequences = {}
    for sequence, series in chosen.items():
        sequences[sequence.value] = {
            "label": series.label, "key": series.key, "files": [str(p) for p in series.files],
            "source": "dicom" if series.is_dicom else "nifti", "geometry": _geometry(images[sequence]),
            "dicom": _dicom_identifiers(series),
        }
    table = [{"series": v.series.label, "sequence": v.sequence.value if v.sequence else None,
              "confidence": v.confidence, "evidence": list(v.evidence), "excluded": v.excluded,
              "used": any(v.series is s for s in chosen.values())} for v in verdicts]
    return {
        "version": RECORD_VERSION, "case_id": case.case_id, "source": str(case.source),
        "atlas": options.atlas.value, "atlas_source": atlas_source, "reference": options.reference.value,
        "skull_strip": options.skull_strip, "brain_ml": round(brain_ml, 1),
        "mask_check": mask_check,
        "sequences": sequences, "identification": table, "registration": quality,
        "transforms": transforms, "pictures": pictures, "seconds": clock.seconds,
        "seconds_total": round(sum(clock.seconds.values()), 2), "cpu_seconds": clock.cpu_seconds,
        "cpu_seconds_total": round(sum(clock.cpu_seconds.values()), 2),
    }


def require_prepare_extra() -> None:
    """Raise the one-line "install bratsx[prepare]" error when a package of the ``prepare`` extra is missing."""
    for package in ("SimpleITK", "pydicom", "highdicom"):
        optional_import(package, "prepare", purpose="bratsx prepare")


def prepare_input(
    input_path: Path | str,
    out: Path | str,
    options: PrepareOptions | None = None,
    on_case: Callable[[PreparedCase], None] | None = None,
) -> list[PreparedCase]:
    """Prepare every case under ``input_path``; a case that fails is reported and the others go on.

    This is the entry point for ``bratsx prepare`` and for the runtime's ``--prepare`` hook: the
    prepared folders (``OUT/<case id>/``) are ordinary BraTS 2018 cases for ``discover_cases``.

    Args:
        input_path: DICOM tree or NIfTI folder(s).
        out: output root (created).
        options: see :class:`PrepareOptions`.
        on_case: called after each case (progress).

    Returns:
        One :class:`PreparedCase` per case found, in case-id order; failed ones carry ``error``.

    Raises:
        BratsxError: the input holds no case at all, or the ``prepare`` extra is not installed.
    """
    require_prepare_extra()
    cases = discover_raw_cases(input_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for case in cases:
        try:
            result = prepare_case(case, out, options)
            log.info("prepared %s in %.1f s", case.case_id, result.record["seconds_total"])
        except CaseError as error:
            log.warning("not prepared: %s", error)
            result = PreparedCase(case.case_id, error=str(error), verdicts=tuple(getattr(error, "verdicts", ())))
        except RuntimeError as error:  # SimpleITK's one exception type: data it cannot process stops this case only
            detail = next((line for line in reversed(str(error).splitlines()) if line.strip()), type(error).__name__)
            log.warning("not prepared: %s: %s", case.case_id, detail)
            result = PreparedCase(case.case_id, error=f"case {case.case_id}: SimpleITK: {detail.strip()[:200]}")
        results.append(result)
        if on_case is not None:
            on_case(result)
    return results
