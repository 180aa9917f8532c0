"""Batch inference over a directory of cases: scheduling around :func:`~bratsx.runtime.segment.segment_case`.

While one case runs through the network, the next one is loaded and preprocessed and the previous
one written, each on a background thread, so disk and gzip never leave the backend idle. Before any
work the output folder is checked (writable, and no output may land on an input). Each case ends in
an atomically written output and a record (:mod:`bratsx.runtime.records`); a rerun reuses the cases
whose record matches their inputs, model and settings, and redoes stale ones. A case that fails is
recorded with its one-line error and the others go on.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..cases import Case
from ..contract import ModelContract
from ..errors import BratsxError, CaseError
from ..imageio import save_nifti_atomic, write_label_map
from ..labels import REGION_ORDER
from ..metrics import volume_ml
from .backends import Backend
from .records import CaseRecord, input_fingerprint, read_records, write_record
from .segment import PreparedCase, Segmentation, SegmentOptions, prepare_case, segment_case

__all__ = ["InferOptions", "check_output_folder", "infer_cases", "output_path", "probabilities_path"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class InferOptions:
    """How to run a directory.

    Attributes:
        segment: how each case is segmented.
        save_probabilities: also write float16 probabilities ``<id>_probabilities.nii.gz``.
        overwrite: redo cases whose output exists and is up to date.
    """

    segment: SegmentOptions = field(default_factory=SegmentOptions)
    save_probabilities: bool = False
    overwrite: bool = False


def output_path(out_dir: Path, case_id: str) -> Path:
    """``OUT/<case_id>.nii.gz``: the BraTS submission naming."""
    return out_dir / f"{case_id}.nii.gz"


def probabilities_path(out_dir: Path, case_id: str) -> Path:
    """``OUT/<case_id>_probabilities.nii.gz``."""
    return out_dir / f"{case_id}_probabilities.nii.gz"


def check_output_folder(cases: Sequence[Case], out_dir: Path, references: dict[str, Path] | None = None) -> None:
    """Refuse, before any work, an output folder that cannot be written or whose outputs would land on inputs.

    Every output file of the batch is resolved (through links) and compared with every input image
    and reference of the batch; so is the folder itself.

    Raises:
        BratsxError: naming the output and the input it would replace, or why the folder is not writable.
    """
    inputs: dict[Path, str] = {}
    for case in cases:
        for path in (*case.images.values(), case.label, (references or {}).get(case.case_id)):
            if path is not None:
                inputs[Path(path).resolve()] = case.case_id
    if out_dir.resolve() in inputs:
        raise BratsxError(f"--out {out_dir} is an input file of case {inputs[out_dir.resolve()]}; choose a new folder")
    for case in cases:
        for output in (output_path(out_dir, case.case_id), probabilities_path(out_dir, case.case_id)):
            owner = inputs.get(output.resolve())
            if owner is not None:
                raise BratsxError(f"--out {out_dir}: the output {output.name} would replace an input of case "
                                  f"{owner} ({output.resolve()}); choose an output folder outside the inputs")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".bratsx-probe-{time.time_ns()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise BratsxError(f"--out {out_dir}: cannot write there ({error.strerror or error})") from None


def _write_probabilities(segmentation: Segmentation, path: Path) -> None:
    geometry = segmentation.loaded.geometry
    stored = np.stack([geometry.from_canonical(channel) for channel in segmentation.probabilities], axis=-1)
    header = geometry.header.copy()
    header.set_data_dtype(np.float16)
    save_nifti_atomic(nib.Nifti1Image(stored.astype(np.float16), geometry.affine, header), path)


def _reusable(record: CaseRecord | None, case: Case, identity: dict[str, Any], out_dir: Path) -> str | None:
    """Why an existing output must be redone (``None``: it is up to date and can be reused)."""
    if record is None or record.status != "ok":
        return "no record of a finished run"
    if not output_path(out_dir, case.case_id).is_file():
        return "output missing"
    if record.inputs != input_fingerprint(case):
        return "input changed"
    if record.model.get("sha256") != identity["model"].get("sha256"):
        return "model changed"
    if record.settings != identity["settings"]:
        return "settings changed"
    return None


def infer_cases(
    cases: Sequence[Case],
    backends: Sequence[Backend],
    contract: ModelContract,
    out_dir: Path,
    options: InferOptions | None = None,
    *,
    model_identity: dict[str, Any] | None = None,
    references: dict[str, Path] | None = None,
    on_case: Callable[[CaseRecord], None] | None = None,
    on_tiles: Callable[[str, int, int], None] | None = None,
) -> list[CaseRecord]:
    """Segment every case into ``out_dir`` and record each.

    Args:
        cases: from :func:`bratsx.cases.discover_cases`.
        backends: one or more models (averaged), sharing ``contract``'s patch and output mode.
        contract: the models' contract.
        out_dir: output folder (created).
        options: how to run.
        model_identity: what the records say about the model (file, sha256, backend, device,
            precision); a change of ``sha256`` makes earlier outputs stale.
        references: reference label files by case id, overriding the cases' own.
        on_case: called with each record as soon as the case is done.
        on_tiles: called with ``(case_id, tiles done, tiles in all)`` while a case runs.

    Returns:
        One record per case, in order: reused, redone or new.

    Raises:
        BratsxError: the output folder cannot be used (see :func:`check_output_folder`).
    """
    options = options or InferOptions()
    if references:
        cases = [dataclasses.replace(c, label=references.get(c.case_id, c.label)) for c in cases]
    check_output_folder(cases, out_dir)
    identity = {"model": model_identity or {}, "settings": _settings(options)}
    earlier = read_records(out_dir)
    records: dict[str, CaseRecord] = {}
    todo: list[tuple[Case, str | None]] = []
    for case in cases:
        exists = output_path(out_dir, case.case_id).is_file()
        reason = _reusable(earlier.get(case.case_id), case, identity, out_dir) if exists else None
        if exists and not options.overwrite and reason is None:
            records[case.case_id] = dataclasses.replace(earlier[case.case_id], note="reused")
        elif exists and not options.overwrite and earlier.get(case.case_id) is None:
            records[case.case_id] = CaseRecord(case.case_id, "skipped", output=output_path(out_dir, case.case_id).name,
                                               note="output exists but no record describes it; --overwrite redoes it")
        else:
            todo.append((case, f"stale: {reason}" if exists and reason else "overwritten" if exists else None))
    for record in records.values():
        if on_case:
            on_case(record)

    def finished(record: CaseRecord) -> None:
        write_record(out_dir, record.stamped())
        records[record.case_id] = record
        if on_case:
            on_case(record)

    def write(segmentation: Segmentation, record: CaseRecord) -> None:
        started = time.perf_counter()
        try:
            write_label_map(segmentation.labels, segmentation.loaded.geometry, output_path(out_dir, record.case_id))
            if options.save_probabilities:
                _write_probabilities(segmentation, probabilities_path(out_dir, record.case_id))
            record.seconds["write"] = time.perf_counter() - started
        except OSError as error:
            record.status, record.output = "failed", None
            record.error = f"case {record.case_id}: writing failed ({error.strerror or error})"
        finished(record)

    with ThreadPoolExecutor(1) as loader, ThreadPoolExecutor(1) as writer:
        upcoming: Future | None = loader.submit(prepare_case, todo[0][0], contract) if todo else None
        writes: list[Future] = []
        for index, (case, note) in enumerate(todo):
            current = upcoming
            upcoming = loader.submit(prepare_case, todo[index + 1][0], contract) if index + 1 < len(todo) else None
            record = CaseRecord(case.case_id, "ok", inputs=input_fingerprint(case), note=note, **identity)
            try:
                prepared: PreparedCase = current.result()
                progress = (lambda done, total, c=case.case_id: on_tiles(c, done, total)) if on_tiles else None
                segmentation = segment_case(prepared, backends, contract, options.segment, progress)
            except Exception as error:  # one case's failure, whatever raised it, must not stop the batch
                expected = isinstance(error, (CaseError, BratsxError))
                record.status = "failed"
                record.error = str(error) if expected else f"case {case.case_id}: {type(error).__name__}: {error}"
                logger.info("case %s failed: %s", case.case_id, error, exc_info=not expected)
                finished(record)
                continue
            record.output = output_path(out_dir, case.case_id).name
            record.seconds = segmentation.seconds
            record.metrics, record.metrics_error = segmentation.metrics, segmentation.metrics_error
            spacing = segmentation.loaded.geometry.canonical_spacing
            record.volumes_ml = {region.value: volume_ml(segmentation.regions[i], spacing)
                                 for i, region in enumerate(REGION_ORDER)}
            writes.append(writer.submit(write, segmentation, record))
        for future in writes:
            future.result()
    return [records[case.case_id] for case in cases]


def _settings(options: InferOptions) -> dict[str, Any]:
    """The options that change an output, as recorded (and compared on a rerun)."""
    segment = dataclasses.asdict(options.segment)
    segment.pop("sw_batch")  # the batch size changes speed, not the result
    if segment["convention"] is not None:
        segment["convention"] = options.segment.convention.value
    return {**segment, "save_probabilities": options.save_probabilities}
