"""One case, end to end: load -> preprocess -> sliding window -> paste back -> regions -> labels -> metrics.

Tiles, mirrorings and models are averaged as logits, and the output activation applied once to the blend,
as nnU-Net and MONAI do with the same network (averaging probabilities instead thresholds differently where
overlapping tiles disagree). An imported model's file returns its logits (its contract's ``outputs``), used as
they are. bratsx's own model files return probabilities (the activation inside), so each output is mapped back to
logits first. Every backend computes that activation in float32 (the fp16 export keeps Sigmoid/Softmax in fp32 and
TensorRT builds it strongly typed, the torch backend casts its logits to float, OpenVINO bf16 returns f32
sigmoids), so one cap, where a float32 sigmoid rounds to 1, serves all; a model whose logits go beyond it
(a trained nnU-Net network's do) is exported with logits out for that reason.

:func:`segment_case` is the single path from a case to its segmentation, given a
:class:`~bratsx.runtime.runner.Runner` (models, contract, settings). :func:`~bratsx.runtime.batch.run_batch`
schedules it over directories for every door (``bratsx infer`` on threads, worker processes or Ray actors,
the web app's jobs, the demo, the bench), and the export accuracy gates compare two backends through it, so
all of them compute the same thing. It never writes files: writing is the batch's.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..cases import Case
from ..choices import look_up
from ..contract import ModelContract
from ..errors import BratsxError, CaseError, LabelError
from ..imageio import LoadedCase, load_case
from ..labels import LabelConvention, OutputMode, labels_from_regions
from ..postprocess import PostprocessSpec, apply_postprocess, spec_of
from ..preprocessing import Preprocessed, paste
from ..scoring import score_label_maps
from ..sliding_window import Blend, Placement, Window, box_predict, sliding_window_predict
from .backends import Backend
from .model_grid import (
    logits_on_case_grid,
    model_labels_from_regions,
    prepare_on_model_grid,
    regions_from_model_output,
)

if TYPE_CHECKING:  # the runner builds on this module: named here for the annotations only
    from .runner import Runner

__all__ = ["LOGIT_CAP", "STAGES", "STAGE_PARTS", "PreparedCase", "SegmentOptions", "Segmentation", "Window",
           "check_model_labels", "check_window", "logits_from_outputs", "logits_from_probabilities", "overlap_for",
           "prepare_case", "probabilities_from_logits", "segment_case", "tile_predictor", "tiled_logits"]

#: Stages timed for every case, in order; they add up to the case's time.
STAGES = ("load", "preprocess", "inference", "postprocess", "write")
#: Parts of a stage, timed too (``seconds["inference.network"]``...): the network's own calls, the blend
#: (tile gathering, logits, Gaussian accumulation, normalisation, the activation) and the resampling back to
#: the case's grid (imported models); pasting into the full volume, regions, post-processing and labels, and
#: the metrics against a reference. Each is inside its stage, so only :data:`STAGES` add up to the case.
STAGE_PARTS = {"inference": ("network", "blend", "resample"), "postprocess": ("paste", "regions", "metrics")}

Predictor = Callable[[np.ndarray], np.ndarray]

#: Largest logit magnitude a float32 sigmoid tells apart from certainty (beyond it the probability rounds to
#: 1): logit(1 - 2**-24). Logits are capped symmetrically at it.
LOGIT_CAP = 16.6
#: Logits beyond which exp overflows float32 (an imported model's raw logits can); their sigmoid is 0 or 1 there.
SIGMOID_RANGE = np.float32(88.0)


@dataclass(frozen=True, kw_only=True)
class SegmentOptions:
    """How a case is segmented.

    Attributes:
        window: ``tiles`` (overlapping tiles of the model's patch, Gaussian-blended) or ``box`` (one forward
            pass over the whole brain box, padded to the network's divisor; only for backends that run any
            shape, so not for TensorRT engines).
        overlap: sliding-window overlap (fraction of a tile shared with each neighbour); ``None``: the model's
            own (``1 - tile_step`` of its contract: 0.5 for bratsx's and nnU-Net's models, a MONAI bundle's
            inferer overlap), see :func:`overlap_for`.
        sw_batch: tiles per backend call (``None``: the backend's preferred batch).
        tta: average the 8 mirrorings of every tile (batched with the tiles; 8x the work).
        convention: label set of the output and of the reference (``--labels``; default: the input's
            own, else the case's layout or id, else the model's; plain folders get BraTS 2023's 0/1/2/3).
        postprocess: the post-processing (:mod:`bratsx.postprocess`); ``None``: the model's own (its
            contract's, which a model folder's tuned spec sets when it is opened).
        model_labels: write the model's own label values (an imported model's ``dataset.json`` labels,
            ``--labels model``) instead of a BraTS label set; metrics are still computed in ``convention``.
    """

    window: Window = Window.TILES
    overlap: float | None = None
    sw_batch: int | None = None
    tta: bool = False
    convention: LabelConvention | None = None
    postprocess: PostprocessSpec | None = None
    model_labels: bool = False

    def __post_init__(self) -> None:  # choices given as text are parsed once, here
        object.__setattr__(self, "window", look_up(Window, self.window, "window"))
        if self.convention is not None:
            object.__setattr__(self, "convention", look_up(LabelConvention, self.convention, "label convention"))


@dataclass
class PreparedCase:
    """A case loaded and preprocessed: what the loader thread hands the backend."""

    loaded: LoadedCase
    ready: Preprocessed
    seconds: dict[str, float]
    label_error: str | None = None


@dataclass
class Segmentation:
    """A segmented case, in canonical orientation (write it back with the loaded case's geometry).

    Attributes:
        loaded: the case as loaded.
        probabilities: float32 ``(C, z, y, x)`` over the full volume (0 outside the brain box).
        regions: boolean ``(3, z, y, x)`` WT, TC, ET after post-processing.
        labels: uint8 ``(z, y, x)`` label map in ``convention``.
        convention: label values of ``labels``; ``None``: the model's own (``SegmentOptions.model_labels``).
        metrics: BraTS metrics against the reference, when the case has a readable one: per region the
            whole-case Dice, sensitivity, specificity, HD95 and volumes, and the BraTS 2023 lesion-wise
            Dice and HD95 with lesion counts (:mod:`bratsx.lesionwise`).
        metrics_error: why there are no metrics although the case has a reference.
        seconds: per stage (load, preprocess, inference, postprocess) and per part of a stage
            (:data:`STAGE_PARTS`, as ``stage.part``).
    """

    loaded: LoadedCase
    probabilities: np.ndarray
    regions: np.ndarray
    labels: np.ndarray
    convention: LabelConvention | None
    metrics: dict[str, float] | None = None
    metrics_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def logits_from_probabilities(probabilities: np.ndarray, output_mode: OutputMode) -> np.ndarray:
    """Back from a backend's probabilities to logits (float32), to average those.

    Sigmoid outputs give their logits, capped symmetrically at :data:`LOGIT_CAP` (so an output that rounded
    to 1 weighs no more than one that rounded to 0); softmax outputs give log-probabilities, which differ
    from the logits by a per-voxel constant that no argmax sees.
    """
    if OutputMode(output_mode) is OutputMode.LABELS:
        return np.log(np.maximum(probabilities, np.float32(1e-30)))
    cap = np.float32(LOGIT_CAP)
    clipped = np.clip(probabilities, np.float32(1e-30), np.float32(1 - 2**-24))
    return np.clip(np.log(clipped) - np.log1p(-clipped), -cap, cap)


def logits_from_outputs(outputs: np.ndarray, output_mode: OutputMode, activated: bool) -> np.ndarray:
    """A backend's outputs as float32 logits: a model file's logits as they are (``activated`` false: its contract's
    ``outputs`` are logits), its probabilities mapped back by :func:`logits_from_probabilities`."""
    outputs = np.asarray(outputs, dtype=np.float32)
    return logits_from_probabilities(outputs, output_mode) if activated else outputs


def probabilities_from_logits(logits: np.ndarray, output_mode: OutputMode) -> np.ndarray:
    """The output activation (sigmoid or softmax over the channels) on float32 ``(C, ...)`` logits, in place."""
    if OutputMode(output_mode) is OutputMode.LABELS:
        logits -= logits.max(axis=0, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=0, keepdims=True)
        return logits
    np.clip(logits, -SIGMOID_RANGE, SIGMOID_RANGE, out=logits)  # exp stays finite; the sigmoid is 0 or 1 there anyway
    np.negative(logits, out=logits)
    np.exp(logits, out=logits)
    logits += 1
    return np.reciprocal(logits, out=logits)


def tile_predictor(backends: Sequence[Backend], tta: bool, output_mode: OutputMode = OutputMode.REGIONS,
                   flips_batched: bool = True, mirror_axes: Sequence[int] = (0, 1, 2),
                   activated: bool = True) -> Predictor:
    """One tile predictor averaging, as logits, several models and, with ``tta``, the 8 mirrorings of each tile.

    With ``flips_batched`` the mirrored copies travel in one batch with the tiles, so a backend sees
    ``8 x`` larger batches rather than 8 times as many calls; without it (a whole brain box, whose
    activations would not fit 8 times over) each mirroring is its own call. The predictor returns logits
    (see :func:`logits_from_outputs`); :func:`probabilities_from_logits` turns their blend back.
    ``mirror_axes`` are the spatial axes TTA mirrors (a contract's ``mirror_axes``; all three by default);
    ``activated``: the backends return probabilities, not logits (a contract's :attr:`activated
    <bratsx.contract.ModelContract.activated>`).
    """
    tile_axes = tuple(axis + 2 for axis in mirror_axes)
    flips = [axes for n in range(len(tile_axes) + 1) for axes in itertools.combinations(tile_axes, n)] if tta else [()]
    groups = [flips] if flips_batched else [[axes] for axes in flips]

    def predict(tiles: np.ndarray) -> np.ndarray:
        total = None
        for group in groups:
            stacked = np.concatenate([np.flip(tiles, axes) if axes else tiles for axes in group])
            for backend in backends:
                out = logits_from_outputs(backend.run(stacked), output_mode, activated)
                for i, axes in enumerate(group):
                    part = out[i * len(tiles) : (i + 1) * len(tiles)]
                    part = np.flip(part, axes) if axes else part
                    total = part.copy() if total is None else total + part
        return total / (len(backends) * len(flips))

    return predict


def prepare_case(case: Case, contract: ModelContract, labels: LabelConvention | None = None) -> PreparedCase:
    """Load ``case`` (with its reference when it has one, read in ``labels`` when given) and preprocess it
    as ``contract`` says.

    A reference segmentation that cannot be read does not stop the case: it is loaded without one,
    and the problem is kept in ``label_error`` to be reported beside the segmentation.

    Raises:
        CaseError: the images cannot be used.
    """
    missing = [channel.upper() for channel in contract.modality_order if channel not in case.images]
    if missing and all(isinstance(p, LabelError) for p in case.problems):
        # found for other channels than the model's (when found for the model's, load_case names the missing file)
        raise CaseError(case.case_id, f"the model takes {', '.join(missing)}, and the case has no {missing[0]} image",
                        case.folder)
    started = time.perf_counter()
    label_error = None
    try:
        loaded = load_case(case, with_label=case.label is not None, convention=labels)
    except LabelError as error:
        loaded, label_error = load_case(case, with_label=False), str(error)
    loaded_at = time.perf_counter()
    ready = prepare_on_model_grid(loaded.image, loaded.geometry.canonical_spacing, contract, loaded.channels)
    seconds = {"load": loaded_at - started, "preprocess": time.perf_counter() - loaded_at}
    return PreparedCase(loaded, ready, seconds, label_error)


def _certain_background(output_mode: OutputMode) -> np.ndarray:
    """Logits of certain background, per channel: for the voxels no tile covered (tiles without brain)."""
    if OutputMode(output_mode) is OutputMode.LABELS:
        return np.array([0.0] + [-LOGIT_CAP] * (output_mode.channels - 1), dtype=np.float32)
    return np.full(output_mode.channels, -LOGIT_CAP, dtype=np.float32)


def overlap_for(options: SegmentOptions, contract: ModelContract) -> float:
    """The sliding-window overlap a case is segmented with: the user's, else the model's (``1 - tile_step``)."""
    return options.overlap if options.overlap is not None else 1.0 - contract.tile_step


def _divisor(contract: ModelContract) -> int:
    """What every spatial input size must be a multiple of: 2 per downsampling stage of the network
    (``NetworkConfig.divisor``, read from the contract without importing torch); for an imported nnU-Net network,
    the largest product of its stages' strides along one axis; an imported MONAI network records its own."""
    if "divisor" in contract.network:
        return int(contract.network["divisor"])
    if "arch_kwargs" in contract.network:
        return int(np.prod(np.asarray(contract.network["arch_kwargs"]["strides"]), axis=0).max())
    return 2 ** (len(contract.network["features"]) - 1)


def tiled_logits(image: np.ndarray, patch: tuple[int, int, int], backends: Sequence[Backend], output_mode: OutputMode,
                 *, tta: bool = False, overlap: float = 0.5, batch_size: int = 1, mask: np.ndarray | None = None,
                 on_tiles: Callable[[int, int], None] | None = None, mirror_axes: Sequence[int] = (0, 1, 2),
                 placement: Placement = Placement.EVEN, blend: Blend = Blend.GAUSSIAN,
                 activated: bool = True) -> np.ndarray:
    """Blended logits of ``backends`` over a preprocessed ``image``, tile by tile (what inference and the
    trainer's validation both compute; :func:`probabilities_from_logits` turns them into probabilities).

    Voxels no tile covers (tiles without brain) are certain background. ``placement`` and ``blend`` are the
    model's (its contract's ``tile_placement`` and ``gaussian``), and so is ``activated`` (see :func:`tile_predictor`).
    """
    predict = tile_predictor(backends, tta, output_mode, mirror_axes=mirror_axes, activated=activated)
    return sliding_window_predict(image, patch, predict, overlap, batch_size,
                                  mask, on_tiles, _certain_background(output_mode), placement, blend)


class _TimedBackend:
    """A backend whose ``run`` calls are timed (the network's share of the inference stage); all else is its own."""

    def __init__(self, backend: Backend) -> None:
        self._backend, self.seconds = backend, 0.0

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def run(self, batch: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self._backend.run(batch)
        finally:
            self.seconds += time.perf_counter() - started


def check_window(backends: Sequence[Backend], options: SegmentOptions) -> None:
    """Refuse ``window`` ``box`` on a backend that runs only its tile shape (its ``runs_any_shape`` flag).

    Raises:
        BratsxError: naming the backend and what to use instead.
    """
    fixed = sorted({b.name for b in backends if not b.runs_any_shape})
    if options.window is Window.BOX and fixed:
        raise BratsxError(f"--window box: the {', '.join(fixed)} backend runs only its tile shape; use --window "
                          "tiles, or --backend ort, openvino or torch for one pass over the brain box")


def check_model_labels(contract: ModelContract, options: SegmentOptions) -> None:
    """Refuse ``model_labels`` for a model without a label set of its own (bratsx's own models write BraTS sets).

    Raises:
        BratsxError: naming the choice to make instead.
    """
    if options.model_labels and contract.model_labels is None:
        raise BratsxError("--labels model: this model has no labels of its own (only imported models do: bratsx "
                          "import nnunet); choose a BraTS label set, or leave --labels out")


def segment_case(
    case: Case | PreparedCase,
    runner: Runner,
    on_tiles: Callable[[int, int], None] | None = None,
) -> Segmentation:
    """Segment one case with a runner's models and settings.

    Args:
        case: a discovered case, or one already prepared by :meth:`Runner.prepare
            <bratsx.runtime.runner.Runner.prepare>` (as a scheduler's loader thread does).
        runner: the open model(s) (averaged), their contract and how to segment
            (:class:`~bratsx.runtime.runner.Runner`).
        on_tiles: called with ``(tiles done, tiles in all)`` while the backend runs.

    Returns:
        The segmentation, with metrics when the case has a reference.

    Raises:
        CaseError: the case cannot be loaded.
        BratsxError: the runner has no open model, or ``window`` is ``box`` and a backend runs only its tile
            shape (:attr:`Backend.runs_any_shape <bratsx.runtime.backends.Backend.runs_any_shape>`).
    """
    runner.require_open()
    backends, contract, options = runner.backends, runner.contract, runner.options
    check_window(backends, options)
    check_model_labels(contract, options)
    box = options.window is Window.BOX
    prepared = case if isinstance(case, PreparedCase) else runner.prepare(case)
    loaded, ready = prepared.loaded, prepared.ready
    seconds = dict(prepared.seconds)
    sw_batch = options.sw_batch or backends[0].preferred_batch

    timed = [_TimedBackend(backend) for backend in backends]
    started = time.perf_counter()
    if box:
        predict = tile_predictor(timed, options.tta, contract.output_mode, flips_batched=False,
                                 mirror_axes=contract.mirror_axes, activated=contract.activated)
        logits = box_predict(ready.image, _divisor(contract), predict)
        if on_tiles is not None:
            on_tiles(1, 1)
    else:
        logits = tiled_logits(ready.image, contract.patch_size, timed, contract.output_mode, tta=options.tta,
                              overlap=overlap_for(options, contract), batch_size=sw_batch, mask=ready.mask,
                              on_tiles=on_tiles, mirror_axes=contract.mirror_axes,
                              placement=Placement(contract.tile_placement),
                              blend=Blend(contract.blend),
                              activated=contract.activated)
    blended = time.perf_counter()
    logits = logits_on_case_grid(logits, ready, loaded.geometry.canonical_spacing, contract)
    resampled = time.perf_counter()
    cropped = probabilities_from_logits(logits, contract.output_mode)
    seconds["inference"] = time.perf_counter() - started
    seconds["inference.network"] = sum(backend.seconds for backend in timed)
    seconds["inference.resample"] = resampled - blended
    seconds["inference.blend"] = seconds["inference"] - seconds["inference.network"] - seconds["inference.resample"]

    started = time.perf_counter()
    probabilities = paste(cropped, ready.box, ready.full_shape)
    pasted = time.perf_counter()
    spec = options.postprocess if options.postprocess is not None else spec_of(contract.postprocess)
    regions = apply_postprocess(regions_from_model_output(probabilities, contract),
                                loaded.geometry.canonical_spacing, spec)
    convention = options.convention or loaded.convention or loaded.case.output_convention(contract.label_set)
    labels = labels_from_regions(regions, convention)
    labelled = time.perf_counter()
    metrics = None
    if loaded.label is not None:
        metrics = score_label_maps(labels, convention, loaded.label, loaded.convention,
                                   loaded.geometry.canonical_spacing, lesion_wise=True)
    scored = time.perf_counter()
    if options.model_labels:
        labels, convention = model_labels_from_regions(regions, contract), None
    ended = time.perf_counter()
    seconds["postprocess"] = ended - started
    seconds["postprocess.paste"] = pasted - started
    seconds["postprocess.regions"] = (labelled - pasted) + (ended - scored)
    seconds["postprocess.metrics"] = scored - labelled
    return Segmentation(loaded, probabilities, regions, labels, convention, metrics, prepared.label_error, seconds)
