"""Batch inference over a directory of cases: load -> preprocess -> tiles -> labels -> write, per case.

While one case runs through the network, the next one is loaded and preprocessed and the previous
one written, each on a background thread, so disk and gzip never leave the backend idle. Outputs
are written atomically and existing ones skipped (a rerun resumes); a case that fails is reported in
its result and the others go on.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..atomic import atomic_path
from ..cases import Case
from ..contract import ModelContract
from ..errors import BratsxError, CaseError
from ..imageio import LoadedCase, load_case, write_label_map
from ..labels import LabelConvention, labels_from_regions, regions_from_labels, regions_from_probabilities
from ..metrics import case_metrics
from ..preprocessing import paste, preprocess
from ..sliding_window import sliding_window_predict
from .backends import Backend

__all__ = ["CaseResult", "InferOptions", "infer_cases", "output_path", "tta_predictor"]

logger = logging.getLogger(__name__)

STAGES = ("load", "preprocess", "inference", "postprocess", "write")


@dataclass(frozen=True)
class InferOptions:
    """How to run a directory.

    Attributes:
        overlap: sliding-window overlap.
        sw_batch: tiles per backend call.
        tta: average the 8 mirrorings of every tile (batched with the tiles).
        convention: label convention of the outputs (default: each input's own; plain folders
            without labels get BraTS 2018-2021's 0/1/2/4).
        save_probabilities: also write float16 probabilities ``<id>_probabilities.nii.gz``.
        min_component_voxels: remove tumour components smaller than this.
        et_to_ncr_below: relabel ET as necrotic core when fewer ET voxels than this are predicted.
        overwrite: predict cases whose output exists.
    """

    overlap: float = 0.5
    sw_batch: int = 2
    tta: bool = False
    convention: LabelConvention | None = None
    save_probabilities: bool = False
    min_component_voxels: int = 0
    et_to_ncr_below: int = 0
    overwrite: bool = False


@dataclass
class CaseResult:
    """One case's outcome: the output written (or why not), seconds per stage, metrics."""

    case_id: str
    output: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] | None = None
    error: str | None = None
    skipped: bool = False


def output_path(out_dir: Path, case_id: str) -> Path:
    """``OUT/<case_id>.nii.gz``: the BraTS submission naming."""
    return out_dir / f"{case_id}.nii.gz"


def tta_predictor(runs: Sequence[Callable[[np.ndarray], np.ndarray]], tta: bool) -> Callable[[np.ndarray], np.ndarray]:
    """One tile predictor averaging several models and, with ``tta``, the 8 mirrorings of each tile.

    The mirrored copies travel in one batch with the tiles, so a backend sees ``8 x`` larger batches
    rather than 8 times as many calls.
    """
    flips = [axes for n in range(4) for axes in itertools.combinations((2, 3, 4), n)] if tta else [()]

    def predict(tiles: np.ndarray) -> np.ndarray:
        stacked = np.concatenate([np.flip(tiles, axes) if axes else tiles for axes in flips])
        total = None
        for run in runs:
            out = np.asarray(run(stacked), dtype=np.float32)
            for i, axes in enumerate(flips):
                part = out[i * len(tiles) : (i + 1) * len(tiles)]
                part = np.flip(part, axes) if axes else part
                total = part.copy() if total is None else total + part
        return total / (len(runs) * len(flips))

    return predict


def _postprocess(regions: np.ndarray, options: InferOptions) -> np.ndarray:
    """Small-component removal and the ET-to-necrosis rule on WT/TC/ET masks."""
    if options.min_component_voxels > 0 and regions[0].any():
        components, count = ndimage.label(regions[0])
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        small = np.flatnonzero(sizes < options.min_component_voxels)
        small = small[small > 0]
        if small.size:
            regions[:, np.isin(components, small)] = False
    if options.et_to_ncr_below > 0 and 0 < np.count_nonzero(regions[2]) < options.et_to_ncr_below:
        regions[2] = False  # the voxels stay in TC: they become necrotic core
    return regions


def _convention(loaded: LoadedCase, options: InferOptions) -> LabelConvention:
    return options.convention or loaded.convention or loaded.case.convention or LabelConvention.BRATS2020


def _write_probabilities(probabilities: np.ndarray, loaded: LoadedCase, path: Path) -> None:
    stored = np.stack([loaded.geometry.from_canonical(channel) for channel in probabilities], axis=-1)
    header = loaded.geometry.header.copy()
    header.set_data_dtype(np.float16)
    image = nib.Nifti1Image(stored.astype(np.float16), loaded.geometry.affine, header)
    with atomic_path(path, suffix=".nii.gz") as temporary:
        nib.save(image, temporary)


def infer_cases(
    cases: Sequence[Case],
    backends: Sequence[Backend],
    contract: ModelContract,
    out_dir: Path,
    options: InferOptions | None = None,
    references: dict[str, Path] | None = None,
    on_case: Callable[[CaseResult], None] | None = None,
    on_tiles: Callable[[str, int, int], None] | None = None,
) -> list[CaseResult]:
    """Segment every case into ``out_dir``.

    Args:
        cases: from :func:`bratsx.cases.discover_cases`.
        backends: one or more models (averaged), sharing ``contract``'s patch and output mode.
        contract: the models' contract.
        out_dir: output folder (created).
        options: how to run.
        references: reference label files by case id, overriding the cases' own.
        on_case: called with each result as soon as the case is done.
        on_tiles: called with ``(case_id, tiles done, tiles in all)`` while a case runs.

    Returns:
        One result per case, in order.
    """
    options = options or InferOptions()
    out_dir.mkdir(parents=True, exist_ok=True)
    predict = tta_predictor([b.run for b in backends], options.tta)
    results: list[CaseResult] = []

    def prepare(case: Case):
        started = time.perf_counter()
        loaded = load_case(case, with_label=case.label is not None)
        loaded_at = time.perf_counter()
        ready = preprocess(loaded.image, contract.crop_margin)
        return loaded, ready, {"load": loaded_at - started, "preprocess": time.perf_counter() - loaded_at}

    def write(loaded: LoadedCase, labels: np.ndarray, probabilities: np.ndarray | None, path: Path) -> float:
        started = time.perf_counter()
        write_label_map(labels, loaded.geometry, path)
        if probabilities is not None:
            _write_probabilities(probabilities, loaded, out_dir / f"{loaded.case.case_id}_probabilities.nii.gz")
        return time.perf_counter() - started

    todo = []
    for case in cases:
        path = output_path(out_dir, case.case_id)
        if path.exists() and not options.overwrite:
            result = CaseResult(case.case_id, path, skipped=True)
            results.append(result)
            if on_case:
                on_case(result)
        else:
            if references and case.case_id in references:
                case = Case(case.case_id, case.layout, case.folder, case.images, references[case.case_id],
                            case.problems)
            todo.append(case)

    with ThreadPoolExecutor(1) as loader, ThreadPoolExecutor(1) as writer:
        upcoming: Future | None = loader.submit(prepare, todo[0]) if todo else None
        pending: list[tuple[CaseResult, Future]] = []
        for index, case in enumerate(todo):
            result = CaseResult(case.case_id)
            current, upcoming = upcoming, (loader.submit(prepare, todo[index + 1]) if index + 1 < len(todo) else None)
            try:
                loaded, ready, seconds = current.result()
                result.seconds.update(seconds)
                started = time.perf_counter()
                tile_progress = (lambda done, total, c=case.case_id: on_tiles(c, done, total)) if on_tiles else None
                cropped = sliding_window_predict(ready.image, contract.patch_size, predict, options.overlap,
                                                 options.sw_batch, ready.mask, tile_progress)
                result.seconds["inference"] = time.perf_counter() - started
                started = time.perf_counter()
                probabilities = paste(cropped, ready.box, ready.full_shape)
                regions = _postprocess(regions_from_probabilities(probabilities, contract.output_mode), options)
                labels = labels_from_regions(regions, _convention(loaded, options))
                if loaded.label is not None:
                    reference = regions_from_labels(loaded.label, loaded.convention)
                    result.metrics = case_metrics(regions, reference, loaded.geometry.canonical_spacing)
                result.seconds["postprocess"] = time.perf_counter() - started
                path = output_path(out_dir, case.case_id)
                kept = probabilities if options.save_probabilities else None
                pending.append((result, writer.submit(write, loaded, labels, kept, path)))
                result.output = path
            except Exception as error:  # one case's failure, whatever raised it, must not stop the batch
                expected = isinstance(error, (CaseError, BratsxError))
                result.error = str(error) if expected else f"case {case.case_id}: {type(error).__name__}: {error}"
                logger.info("case %s failed: %s", case.case_id, error, exc_info=not expected)
                if on_case:
                    on_case(result)
            results.append(result)
            still_writing = []
            for done, future in pending:
                if future.done():
                    _finish(done, future, on_case)
                else:
                    still_writing.append((done, future))
            pending = still_writing
        for done, future in pending:
            _finish(done, future, on_case)
    order = {case.case_id: i for i, case in enumerate(cases)}
    return sorted(results, key=lambda r: order[r.case_id])


def _finish(result: CaseResult, future: Future, on_case) -> None:
    """Collect a background write: its seconds, or its error (the output is then absent)."""
    try:
        result.seconds["write"] = future.result()
    except (OSError, ValueError) as error:
        result.error, result.output = f"writing failed: {error}", None
    if on_case:
        on_case(result)
