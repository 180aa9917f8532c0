"""The per-case pieces every scheduler shares: segment a prepared case, write it and its record, and the
threaded pipeline that overlaps loading, segmenting and writing.

While one case runs through the network, the next one is loaded and preprocessed and the previous
one written, each on a background thread, so disk and gzip never leave the backend idle. Each case
ends in an atomically written output and a record (:mod:`bratsx.runtime.records`); a case that fails
is recorded with its one-line error and the others go on.

:func:`~bratsx.runtime.batch.run_batch` owns a run (planning, resume, accounting, summary) and hands
the cases to a scheduler (threads here, worker processes in :mod:`~bratsx.runtime.parallel`, Ray actors
in :mod:`~bratsx.runtime.ray_runner`); each scheduler calls :func:`prepare_or_error`,
:func:`segment_one` and :func:`write_one` (or :func:`run_pipeline`, which overlaps them), so outputs
are byte-identical whichever scheduler ran them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from ..cases import Case
from ..errors import BratsxError, failure_text
from ..geometry import Geometry
from ..imageio import save_nifti_atomic, write_label_map
from ..labels import LabelConvention
from ..metrics import region_volumes_ml
from .records import CaseRecord, CaseStatus, input_fingerprint, write_record
from .segment import PreparedCase, segment_case

if TYPE_CHECKING:  # the runner is built on the segment module; named here for the annotations only
    from .runner import Runner

__all__ = ["CaseOutput", "InferOptions", "check_output_folder", "output_path", "prepare_or_error",
           "probabilities_path", "run_pipeline", "segment_one", "write_one"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class InferOptions:
    """How to run a directory (how each case is segmented is the runner's: :class:`~bratsx.runtime.runner.Runner`).

    Attributes:
        save_probabilities: also write float16 probabilities ``<id>_probabilities.nii.gz``.
        overwrite: redo cases whose output exists and is up to date.
    """

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


@dataclass
class CaseOutput:
    """One case between segmentation and writing: its record and what the write stage needs, nothing more.

    Kept small because schedulers move it between threads, processes and Ray nodes.

    Attributes:
        record: the case's record, complete but for the write time (``status`` ``failed`` when it failed).
        labels: uint8 canonical label map (``None`` when the case failed).
        geometry: the input's geometry, to write the labels back in it.
        probabilities: float32 ``(C, z, y, x)`` canonical probabilities, only when they are to be saved.
        convention: the label values of ``labels``; ``None``: the model's own (``--labels model``).
    """

    record: CaseRecord
    labels: np.ndarray | None = None
    geometry: Geometry | None = None
    probabilities: np.ndarray | None = None
    convention: LabelConvention | None = None


def prepare_or_error(case: Case, runner: Runner) -> PreparedCase | Exception:
    """:meth:`Runner.prepare <bratsx.runtime.runner.Runner.prepare>`, with its failure returned rather than raised.

    A loader (a thread, a process, a Ray task) hands the failure on to :func:`segment_one`, which
    records it, so one bad case never stops the batch.
    """
    try:
        return runner.prepare(case)
    except Exception as error:  # whatever one case raises is that case's failure
        return error


def segment_one(
    case: Case,
    prepared: PreparedCase | Exception,
    note: str | None,
    runner: Runner,
    options: InferOptions,
    identity: dict[str, Any],
    on_tiles: Callable[[str, int, int], None] | None = None,
) -> CaseOutput:
    """Segment one prepared case and build its record; a failure (loading included) becomes a failed record.

    Args:
        case: the case.
        prepared: what :func:`prepare_or_error` returned for it.
        note: what the record says the scheduler did (see :class:`~bratsx.runtime.batch.RunPlan`).
        runner: the open model(s) and how to segment.
        options: how to run.
        identity: ``{"model": ..., "settings": ...}`` for the record.
        on_tiles: called with ``(case_id, tiles done, tiles in all)`` while the case runs.

    Returns:
        The case's output, ready for :func:`write_one`.
    """
    record = CaseRecord(case.case_id, CaseStatus.OK, inputs=input_fingerprint(case), note=note, **identity)
    try:
        if isinstance(prepared, Exception):
            raise prepared
        progress = (lambda done, total: on_tiles(case.case_id, done, total)) if on_tiles else None
        segmentation = segment_case(prepared, runner, progress)
    except Exception as error:  # one case's failure, whatever raised it, must not stop the batch
        record.status, record.error = CaseStatus.FAILED, failure_text(error, case.case_id)
        if not isinstance(error, BratsxError):
            logger.info("case %s failed", case.case_id, exc_info=error)
        return CaseOutput(record)
    record.output = output_path(Path(), case.case_id).name
    record.seconds = segmentation.seconds
    record.metrics, record.metrics_error = segmentation.metrics, segmentation.metrics_error
    if segmentation.metrics is not None:
        record.label_set = segmentation.loaded.convention.value
    geometry = segmentation.loaded.geometry
    record.volumes_ml = region_volumes_ml(segmentation.regions, geometry.canonical_spacing)
    probabilities = segmentation.probabilities if options.save_probabilities else None
    return CaseOutput(record, segmentation.labels, geometry, probabilities, segmentation.convention)


def write_one(output: CaseOutput, out_dir: Path) -> CaseRecord:
    """Write a segmented case's files, then its record (both atomically); a failed case gets its record only.

    The record is written last, so a record saying ``ok`` always describes complete outputs; when the
    record cannot be written (a full disk), the case's outputs are removed and it fails in one line.

    Returns:
        The record as written (``failed`` with the reason when writing failed).
    """
    record = output.record
    if record.status == CaseStatus.OK and output.labels is not None and output.geometry is not None:
        started = time.perf_counter()
        try:
            write_label_map(output.labels, output.geometry, output_path(out_dir, record.case_id))
            if output.probabilities is not None:
                _write_probabilities(output.probabilities, output.geometry, probabilities_path(out_dir, record.case_id))
            record.seconds["write"] = time.perf_counter() - started
        except OSError as error:
            record.status, record.output = CaseStatus.FAILED, None
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
    runner: Runner,
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
        todo: cases and their notes, e.g. :attr:`~bratsx.runtime.batch.RunPlan.todo`.
        runner: the open model(s) and how to segment.
        out_dir: output folder (checked: see :func:`~bratsx.runtime.batch.plan_run`).
        options: how to run.
        identity: ``{"model": ..., "settings": ...}`` for the records.
        on_record: called with each record once it is written.
        on_tiles: called with ``(case_id, tiles done, tiles in all)`` while a case runs.
    """
    items = iter(todo)

    def load_next() -> tuple[Case, PreparedCase | Exception, str | None] | None:
        item = next(items, None)
        return None if item is None else (item[0], prepare_or_error(item[0], runner), item[1])

    def write(output: CaseOutput) -> None:
        record = write_one(output, out_dir)
        if on_record:
            on_record(record)

    with ThreadPoolExecutor(1) as loader, ThreadPoolExecutor(1) as writer:
        upcoming: Future = loader.submit(load_next)
        writes: list[Future] = []
        while (loaded := upcoming.result()) is not None:
            upcoming = loader.submit(load_next)
            writes.append(writer.submit(write, segment_one(*loaded, runner, options, identity, on_tiles)))
        for future in writes:
            future.result()
