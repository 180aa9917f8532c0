"""Batch inference over a directory of cases: scheduling around :func:`~bratsx.runtime.segment.segment_case`.

While one case runs through the network, the next one is loaded and preprocessed and the previous
one written, each on a background thread, so disk and gzip never leave the backend idle. Before any
work the output folder is checked (writable, and no output may land on an input). Each case ends in
an atomically written output and a record (:mod:`bratsx.runtime.records`); a rerun reuses the cases
whose record matches their inputs, model and settings, and redoes stale ones. A case that fails is
recorded with its one-line error and the others go on.

The same pieces serve every scheduler (these threads, worker processes in :mod:`~bratsx.runtime.parallel`,
Ray actors in :mod:`~bratsx.runtime.ray_runner`): :func:`plan_run` decides what to redo,
:func:`segment_one` turns a prepared case into a :class:`CaseOutput`, :func:`write_one` writes it and its
record, and :func:`run_pipeline` overlaps the three for any stream of cases; so outputs are byte-identical
whichever scheduler ran them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..atomic import remove_stale_temporaries
from ..cases import Case
from ..contract import ModelContract
from ..errors import BratsxError, CaseError
from ..geometry import Geometry
from ..imageio import save_nifti_atomic, write_label_map
from ..labels import REGION_ORDER
from ..metrics import volume_ml
from .backends import Backend
from .records import RECORDS_DIR, CaseRecord, input_fingerprint, read_records, write_record
from .segment import PreparedCase, SegmentOptions, prepare_case, segment_case

__all__ = ["CaseOutput", "InferOptions", "RunPlan", "check_output_folder", "failure_message", "infer_cases",
           "output_path", "plan_run", "prepare_or_error", "probabilities_path", "run_pipeline", "segment_one",
           "write_one"]

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


def _resolved(path: Path | str) -> Path | None:
    """``path`` through its links, or ``None`` when it cannot be resolved (a symlink loop).

    An input that cannot be resolved cannot be read either: its case fails alone when it is loaded, and
    no output can land on it. Before Python 3.13 a loop raises RuntimeError, since then OSError.
    """
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return None


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
            if path is not None and (resolved := _resolved(path)) is not None:
                inputs[resolved] = case.case_id
    if _resolved(out_dir) in inputs:
        raise BratsxError(f"--out {out_dir} is an input file of case {inputs[_resolved(out_dir)]}; choose a new folder")
    for case in cases:
        for output in (output_path(out_dir, case.case_id), probabilities_path(out_dir, case.case_id)):
            owner = inputs.get(_resolved(output))
            if owner is not None:
                raise BratsxError(f"--out {out_dir}: the output {output.name} would replace an input of case "
                                  f"{owner} ({_resolved(output)}); choose an output folder outside the inputs")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".bratsx-probe-{time.time_ns()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise BratsxError(f"--out {out_dir}: cannot write there ({error.strerror or error})") from None


def _write_probabilities(probabilities: np.ndarray, geometry: Geometry, path: Path) -> None:
    stored = np.stack([geometry.from_canonical(channel) for channel in probabilities], axis=-1)
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


@dataclass
class CaseOutput:
    """One case between segmentation and writing: its record and what the write stage needs, nothing more.

    Kept small because schedulers move it between threads, processes and Ray nodes.

    Attributes:
        record: the case's record, complete but for the write time (``status`` ``failed`` when it failed).
        labels: uint8 canonical label map (``None`` when the case failed).
        geometry: the input's geometry, to write the labels back in it.
        probabilities: float32 ``(C, z, y, x)`` canonical probabilities, only when they are to be saved.
    """

    record: CaseRecord
    labels: np.ndarray | None = None
    geometry: Geometry | None = None
    probabilities: np.ndarray | None = None


@dataclass
class RunPlan:
    """What a run of a directory has to do, decided before any work.

    Attributes:
        cases: every case of the batch, in order (with ``references`` applied).
        identity: ``{"model": ..., "settings": ...}`` as every record of the run says it.
        done: records of the cases left as they are (``reused`` or ``skipped``), by case id.
        todo: the cases to segment, each with the note its record gets (``stale: ...``, ``overwritten``).
    """

    cases: list[Case]
    identity: dict[str, Any]
    done: dict[str, CaseRecord]
    todo: list[tuple[Case, str | None]]


def plan_run(
    cases: Sequence[Case],
    out_dir: Path,
    options: InferOptions,
    model_identity: dict[str, Any] | None = None,
    references: dict[str, Path] | None = None,
) -> RunPlan:
    """Check the output folder and decide, from the records already there, which cases to (re)do.

    Args:
        cases: the batch.
        out_dir: output folder (created).
        options: how to run (``overwrite`` redoes up-to-date cases).
        model_identity: what the records say about the model (see :func:`infer_cases`).
        references: reference label files by case id, overriding the cases' own.

    Returns:
        The plan: reused and skipped cases' records, and the cases to segment.

    Raises:
        BratsxError: the output folder cannot be used (see :func:`check_output_folder`).
    """
    if references:
        cases = [dataclasses.replace(c, label=references.get(c.case_id, c.label)) for c in cases]
    check_output_folder(cases, out_dir)
    for folder in (out_dir, out_dir / RECORDS_DIR):
        for removed in remove_stale_temporaries(folder):
            logger.info("removed %s, left by an interrupted write", removed)
    identity = {"model": model_identity or {}, "settings": _settings(options)}
    earlier = read_records(out_dir)
    done: dict[str, CaseRecord] = {}
    todo: list[tuple[Case, str | None]] = []
    for case in cases:
        exists = output_path(out_dir, case.case_id).is_file()
        reason = _reusable(earlier.get(case.case_id), case, identity, out_dir) if exists else None
        if exists and not options.overwrite and reason is None:
            done[case.case_id] = dataclasses.replace(earlier[case.case_id], note="reused")
        elif exists and not options.overwrite and earlier.get(case.case_id) is None:
            done[case.case_id] = CaseRecord(case.case_id, "skipped", output=output_path(out_dir, case.case_id).name,
                                            note="output exists but no record describes it; --overwrite redoes it")
        else:
            todo.append((case, f"stale: {reason}" if exists and reason else "overwritten" if exists else None))
    return RunPlan(list(cases), identity, done, todo)


def prepare_or_error(case: Case, contract: ModelContract) -> PreparedCase | Exception:
    """:func:`~bratsx.runtime.segment.prepare_case`, with its failure returned rather than raised.

    A loader (a thread, a process, a Ray task) hands the failure on to :func:`segment_one`, which
    records it, so one bad case never stops the batch.
    """
    try:
        return prepare_case(case, contract)
    except Exception as error:  # whatever one case raises is that case's failure
        return error


def failure_message(case_id: str, error: BaseException) -> str:
    """The one-line error a record keeps: bratsx's own message, else the exception's type and text."""
    if isinstance(error, (CaseError, BratsxError)):
        return str(error)
    logger.info("case %s failed", case_id, exc_info=error)
    return f"case {case_id}: {type(error).__name__}: {error}"


def segment_one(
    case: Case,
    prepared: PreparedCase | Exception,
    note: str | None,
    backends: Sequence[Backend],
    contract: ModelContract,
    options: InferOptions,
    identity: dict[str, Any],
    on_tiles: Callable[[str, int, int], None] | None = None,
) -> CaseOutput:
    """Segment one prepared case and build its record; a failure (loading included) becomes a failed record.

    Args:
        case: the case.
        prepared: what :func:`prepare_or_error` returned for it.
        note: what the record says the scheduler did (see :class:`RunPlan`).
        backends: the open models (averaged).
        contract: their contract.
        options: how to run.
        identity: ``{"model": ..., "settings": ...}`` for the record.
        on_tiles: called with ``(case_id, tiles done, tiles in all)`` while the case runs.

    Returns:
        The case's output, ready for :func:`write_one`.
    """
    record = CaseRecord(case.case_id, "ok", inputs=input_fingerprint(case), note=note, **identity)
    try:
        if isinstance(prepared, Exception):
            raise prepared
        progress = (lambda done, total: on_tiles(case.case_id, done, total)) if on_tiles else None
        segmentation = segment_case(prepared, backends, contract, options.segment, progress)
    except Exception as error:  # one case's failure, whatever raised it, must not stop the batch
        record.status, record.error = "failed", failure_message(case.case_id, error)
        return CaseOutput(record)
    record.output = output_path(Path(), case.case_id).name
    record.seconds = segmentation.seconds
    record.metrics, record.metrics_error = segmentation.metrics, segmentation.metrics_error
    if segmentation.metrics is not None:
        record.label_set = segmentation.loaded.convention.value
    geometry = segmentation.loaded.geometry
    record.volumes_ml = {region.value: volume_ml(segmentation.regions[i], geometry.canonical_spacing)
                         for i, region in enumerate(REGION_ORDER)}
    probabilities = segmentation.probabilities if options.save_probabilities else None
    return CaseOutput(record, segmentation.labels, geometry, probabilities)


def write_one(output: CaseOutput, out_dir: Path) -> CaseRecord:
    """Write a segmented case's files, then its record (both atomically); a failed case gets its record only.

    The record is written last, so a record saying ``ok`` always describes complete outputs; when the
    record cannot be written (a full disk), the case's outputs are removed and it fails in one line.

    Returns:
        The record as written (``failed`` with the reason when writing failed).
    """
    record = output.record
    if record.status == "ok" and output.labels is not None and output.geometry is not None:
        started = time.perf_counter()
        try:
            write_label_map(output.labels, output.geometry, output_path(out_dir, record.case_id))
            if output.probabilities is not None:
                _write_probabilities(output.probabilities, output.geometry, probabilities_path(out_dir, record.case_id))
            record.seconds["write"] = time.perf_counter() - started
        except OSError as error:
            record.status, record.output = "failed", None
            record.error = f"case {record.case_id}: writing failed ({error.strerror or error})"
    try:
        write_record(out_dir, record.stamped())
    except OSError as error:  # a full disk: no output may stay without the record that describes it
        for written in (output_path(out_dir, record.case_id), probabilities_path(out_dir, record.case_id)):
            written.unlink(missing_ok=True)
        record.status, record.output = "failed", None
        record.error = f"case {record.case_id}: writing its record failed ({error.strerror or error}); " \
                       "its output was removed"
    return record


def run_pipeline(
    todo: Iterable[tuple[Case, str | None]],
    backends: Sequence[Backend],
    contract: ModelContract,
    out_dir: Path,
    options: InferOptions,
    identity: dict[str, Any],
    on_record: Callable[[CaseRecord], None] | None = None,
    on_tiles: Callable[[str, int, int], None] | None = None,
) -> None:
    """Segment a stream of cases with the next one loading and the previous one writing meanwhile.

    ``todo`` is read one case ahead, on the loader thread, so it may be a queue shared with other
    workers (a case is taken only when this worker can start loading it).

    Args:
        todo: cases and their notes, e.g. :attr:`RunPlan.todo`.
        backends: the open models (averaged).
        contract: their contract.
        out_dir: output folder (checked: see :func:`plan_run`).
        options: how to run.
        identity: ``{"model": ..., "settings": ...}`` for the records.
        on_record: called with each record once it is written.
        on_tiles: called with ``(case_id, tiles done, tiles in all)`` while a case runs.
    """
    items = iter(todo)

    def load_next() -> tuple[Case, PreparedCase | Exception, str | None] | None:
        item = next(items, None)
        return None if item is None else (item[0], prepare_or_error(item[0], contract), item[1])

    def write(output: CaseOutput) -> None:
        record = write_one(output, out_dir)
        if on_record:
            on_record(record)

    with ThreadPoolExecutor(1) as loader, ThreadPoolExecutor(1) as writer:
        upcoming: Future = loader.submit(load_next)
        writes: list[Future] = []
        while (loaded := upcoming.result()) is not None:
            upcoming = loader.submit(load_next)
            writes.append(writer.submit(write, segment_one(*loaded, backends, contract, options, identity, on_tiles)))
        for future in writes:
            future.result()


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
    plan = plan_run(cases, out_dir, options, model_identity, references)
    records = dict(plan.done)
    for record in plan.done.values():
        if on_case:
            on_case(record)

    def finished(record: CaseRecord) -> None:
        records[record.case_id] = record
        if on_case:
            on_case(record)

    run_pipeline(plan.todo, backends, contract, out_dir, options, plan.identity, finished, on_tiles)
    return [records[case.case_id] for case in plan.cases]


def _settings(options: InferOptions) -> dict[str, Any]:
    """The options that change an output, as recorded (and compared on a rerun)."""
    segment = dataclasses.asdict(options.segment)
    segment.pop("sw_batch")  # the batch size changes speed, not the result
    if segment["convention"] is not None:
        segment["convention"] = options.segment.convention.value
    return {**segment, "save_probabilities": options.save_probabilities}
