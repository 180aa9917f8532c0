"""INT8 model files: NNCF quantization of the fp32 model for OpenVINO's CPU plugin, behind a held-out gate.

The fp32 ONNX is read by OpenVINO, NNCF inserts FakeQuantize operations around the convolutions (and
only them: the element-wise arithmetic of the staged instance normalisations, which NNCF would otherwise
quantize too, stays in f32, as the fp16 model keeps it in fp32; so do the transposed convolutions, a few % of
the FLOPs, and with ``keep_ends`` the first convolution, on the z-scored images, and the output head) with
ranges collected on calibration tiles (the MIXED preset: symmetric int8 weights, asymmetric int8 activations,
which suit the LeakyReLU outputs; activation ranges from per-tile quantiles), and the result is saved as an
OpenVINO IR pair (``model.int8.xml`` + ``model.int8.bin``). IR rather than an int8 ONNX QDQ model: it is
what NNCF's OpenVINO path produces and what the CPU plugin turns into VNNI/AMX int8 kernels directly, while
ONNX Runtime's CPU provider has no fast int8 3D convolution, so a QDQ file would serve OpenVINO only anyway.

Two methods (:class:`Int8Method`): ``ptq``, NNCF's post-training quantization; ``accuracy-control``, NNCF's
``quantize_with_accuracy_control``, which then reverts the quantized operations that cost most Dice to f32,
one at a time, until a Dice validation function is within :data:`INT8_GATE_DICE` of fp32. Its validation
cases are the calibration cases (training data), never the gate's.

Calibration tiles are what the network sees at inference: each calibration case prepared by
:func:`~bratsx.runtime.segment.prepare_case` (loaded, cropped, z-scored) and cut into the tiles the sliding
window plans for it. The gate is honest: it segments whole **held-out** cases (:func:`int8_cases`: the
validation cases of the model's own split, or ``--int8-gate-dir``, or synthetic cases of another seed), none
of them a calibration case, through ``segment_case``, and the int8 model passes only if the WT/TC/ET Dice
against fp32 is at least :data:`INT8_GATE_DICE` on every one of them. The cases of both sets are recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..cases import Case, discover_cases
from ..contract import ModelContract
from ..errors import BratsxError
from ..extras import optional_import
from ..printed import printed_to_debug_log
from ..runtime.backends import Backend, BackendBase, OpenVinoBackend
from ..runtime.runner import Runner
from ..runtime.segment import prepare_case, segment_case
from ..sliding_window import Placement, planned_tiles
from .fp16 import GateResult, accuracy_gate, calibration_cases, region_agreement
from .options import Int8Method

__all__ = ["INT8_GATE_ARITHMETIC", "INT8_GATE_DICE", "Int8Method", "Int8Result", "calibration_tiles", "int8_cases",
           "int8_from_onnx", "int8_gated"]

logger = logging.getLogger(__name__)

#: Per-region Dice between int8 and fp32 masks an int8 export must reach on every held-out case. Lower
#: than fp16's 0.999 (int8 rounds activations to 256 levels, not 65536), and equal to the agreement at which
#: the bench counts two implementations as computing the same segmentation (``AGREEMENT_FLOOR``): an int8
#: model is kept only where it is as interchangeable with fp32 as a peer must be to be compared at all.
INT8_GATE_DICE = 0.99
#: What the int8 gate's arithmetic is.
INT8_GATE_ARITHMETIC = "OpenVINO CPU: NNCF int8 convolutions (MIXED preset), other operations in f32"
#: Most calibration tiles used (evenly spread over all the cases' tiles): a few dozen tiles of real brains
#: fix the activation ranges; NNCF's own default is 300 samples.
CALIBRATION_TILES = 64
#: OpenVINO operations quantized; every other operation type is in NNCF's ignored scope. Quantizing the
#: transposed convolutions too cost 0.003 of WT Dice against fp32 on the BraTS 2018 model for ~3% of the FLOPs.
QUANTIZED_OPS = ("Convolution",)
#: Most quantized operations accuracy control reverts to f32 (each revert is one more validation pass).
MAX_REVERTED = 8
#: Synthetic gate cases (when there are no real held-out ones), and their seed (the calibration cases' is 0).
SYNTHETIC_GATE_CASES, SYNTHETIC_GATE_SEED = 2, 1


@dataclass(frozen=True)
class Int8Result:
    """An int8 quantization and its held-out gate.

    Attributes:
        gate: Dice against fp32 on the gate cases (threshold :data:`INT8_GATE_DICE`).
        calibration_cases: ids of the cases the tiles (and accuracy control's validation) came from.
        gate_cases: ids of the held-out cases the gate segmented.
        gate_source: where the gate cases came from.
        method: the :class:`Int8Method` value.
        kept_in_f32: quantizable convolutions left in f32 (the ends, and those accuracy control reverted).
        seconds: quantization time (calibration and, with accuracy control, its validations).
    """

    gate: GateResult
    calibration_cases: list[str]
    gate_cases: list[str]
    gate_source: str
    method: str
    kept_in_f32: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def record(self, calibration: str) -> dict[str, Any]:
        """The ``gates.int8`` entry of ``model.json``; ``reason`` says in one line why a failed file was not kept."""
        gate = self.gate
        entry = {"dice": gate.dice, "threshold": gate.threshold, "passed": gate.passed, "cases": gate.cases,
                 "dice_per_case": gate.per_case, "gate_cases": self.gate_cases, "gate_source": self.gate_source,
                 "calibration": calibration,
                 "calibration_cases": self.calibration_cases, "method": self.method, "kept_in_f32": self.kept_in_f32,
                 "quantization_s": self.seconds, "arithmetic": INT8_GATE_ARITHMETIC}
        if not gate.passed:
            entry["reason"] = self.refusal()
        return entry

    def refusal(self) -> str:
        """One line: why the int8 file is not shipped."""
        return (f"int8 not shipped: {self.gate.describe()} on held-out cases {', '.join(self.gate_cases)}; the model "
                "folder keeps its other files")


def calibration_tiles(cases: Sequence[Case], contract: ModelContract, overlap: float | None = None
                      ) -> Iterator[np.ndarray]:
    """The ``(1, C, *patch)`` tiles inference feeds the network for ``cases``, case after case (``overlap``
    ``None``: the model's own, placed as the model's contract says).

    Raises:
        CaseError: a case cannot be loaded.
    """
    overlap = 1.0 - contract.tile_step if overlap is None else overlap
    for case in cases:
        ready = prepare_case(case, contract).ready
        for tile in planned_tiles(ready.image, contract.patch_size, overlap, ready.mask,
                                  Placement(contract.tile_placement)):
            yield tile[None]


def int8_cases(contract: ModelContract, scratch: Path, calibration_dir: Path | None, count: int,
               gate_dir: Path | None = None, split: dict[str, list[str]] | None = None
               ) -> tuple[list[Case], list[Case], str]:
    """The calibration cases and the held-out gate cases, disjoint, with where the gate cases came from.

    - ``gate_dir``: the gate runs on its cases; calibration on the first ``count`` of ``calibration_dir``
      (synthetic without it) that are not among them;
    - ``calibration_dir`` and the model's ``split``: calibration on the first ``count`` of its training cases
      found there, the gate on every one of its validation cases found there;
    - neither: ``count`` synthetic calibration cases and :data:`SYNTHETIC_GATE_CASES` of another seed.

    Raises:
        BratsxError: real calibration cases with no held-out case to gate on, or a gate case that is also a
            calibration case.
    """
    def readable(folder: Path) -> list[Case]:
        return [c for c in discover_cases(folder, channels=contract.modality_order) if not c.problems]

    if gate_dir is not None:
        gate = readable(gate_dir)
        source = f"--int8-gate-dir {gate_dir}"
        held = {c.case_id for c in gate}
        pool = ([c for c in readable(calibration_dir) if c.case_id not in held]
                if calibration_dir is not None else calibration_cases(contract, scratch / "calibration", None, count))
        calibration = pool[:count]
    elif calibration_dir is not None:
        if not split or not split.get("val"):
            raise BratsxError(f"--int8 --calib-dir {calibration_dir}: the model records no train/val split, so no "
                              "case is known to be held out; give the gate's held-out cases with --int8-gate-dir")
        found = {c.case_id: c for c in readable(calibration_dir)}
        calibration = [found[i] for i in split.get("train", []) if i in found][:count]
        gate = [found[i] for i in split["val"] if i in found]
        source = f"the validation cases of the model's split, found in {calibration_dir}"
    else:
        calibration = calibration_cases(contract, scratch / "calibration", None, count)
        gate = calibration_cases(contract, scratch / "gate", None, SYNTHETIC_GATE_CASES, seed=SYNTHETIC_GATE_SEED)
        source = f"synthetic (seed {SYNTHETIC_GATE_SEED}; calibration seed 0)"
    if not gate or not calibration:
        missing = "held-out (gate)" if not gate else "calibration"
        raise BratsxError(f"int8: no readable {missing} case ({source}); the int8 gate needs both")
    shared = sorted({c.case_id for c in gate} & {c.case_id for c in calibration})
    if shared and (gate_dir is not None or calibration_dir is not None):
        raise BratsxError(f"int8: case(s) {', '.join(shared)} would both calibrate and gate; the gate must be held out")
    return calibration, gate, source


class _CompiledOpenVino(BackendBase):
    """A model NNCF compiled (for accuracy control's validation function) behind the :class:`Backend` interface."""

    name, precision = "openvino-int8", "int8"

    def __init__(self, compiled: Any) -> None:
        self._request, self._output = compiled.create_infer_request(), compiled.output(0)

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self._request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.array(result[self._output], dtype=np.float32, copy=True)


def _dice_validation(reference: Backend, contract: ModelContract, cases: Sequence[Case]):
    """Accuracy control's validation set (indices of ``cases``) and function: per case, the worst region's Dice
    between the candidate's masks and ``reference``'s (fp32: 1.0), and their minimum as the metric."""
    runner = Runner.from_backends([reference], contract)
    prepared = [runner.prepare(case) for case in cases]
    masks = [segment_case(ready, runner).regions for ready in prepared]

    def validate(compiled: Any, indices: Any) -> tuple[float, list[float]]:
        candidate = Runner.from_backends([_CompiledOpenVino(compiled)], contract)
        per_case = [min(region_agreement(segment_case(prepared[i], candidate).regions, masks[i]).values())
                    for i in indices]
        return min(per_case), per_case

    return list(range(len(cases))), validate


def _quantizable_convolutions(model: Any) -> list[str]:
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in QUANTIZED_OPS]


def int8_from_onnx(source: Path, out: Path, tiles: Sequence[np.ndarray], *, keep_ends: bool = True,
                   method: Int8Method | str = Int8Method.PTQ, reference: Backend | None = None,
                   contract: ModelContract | None = None, validation_cases: Sequence[Case] = ()) -> list[str]:
    """Quantize an fp32 bratsx ONNX model to an int8 OpenVINO IR (``out`` the ``.xml``; the ``.bin`` beside it).

    Args:
        source: the fp32 ``model.onnx``.
        out: the ``.xml`` to write.
        tiles: calibration inputs, each float32 ``(1, C, *patch)``.
        keep_ends: keep the first convolution and the output head in f32.
        method: :class:`Int8Method`; ``accuracy-control`` needs ``reference`` (fp32), ``contract`` and
            ``validation_cases`` (never the gate's).

    Returns:
        The convolutions left in f32.

    Raises:
        BratsxError: nncf or openvino is not installed, no calibration tile, or accuracy control without its
            validation cases.
    """
    ov = optional_import("openvino", "int8", purpose="INT8 export")
    nncf = optional_import("nncf", "int8", purpose="INT8 export")
    from nncf.quantization.advanced_parameters import (
        AdvancedAccuracyRestorerParameters,
        AdvancedQuantizationParameters,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet
    method = Int8Method(method)
    if not tiles:
        raise BratsxError("int8 quantization needs calibration tiles; none came from the calibration cases")
    model = ov.Core().read_model(str(source))
    kept = sorted({op.get_type_name() for op in model.get_ops()} - set(QUANTIZED_OPS))
    convolutions = _quantizable_convolutions(model)
    ends = [convolutions[0], convolutions[-1]] if keep_ends else []  # the image's first convolution, the output head
    # Activation ranges from the mean of per-tile quantiles, not of minima and maxima: a few extreme voxels
    # per tile would otherwise stretch the 256 levels (ET Dice vs fp32 0.984 with min/max, 0.990 with these)
    ranges = AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MEAN_QUANTILE)
    common = {"preset": nncf.QuantizationPreset.MIXED, "subset_size": len(tiles),
              "ignored_scope": nncf.IgnoredScope(names=ends, types=kept, validate=False)}
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)  # NNCF logs each operation it leaves out, on a handler of its own
    try:
        with printed_to_debug_log(logger, "NNCF"):  # and draws progress bars on stdout
            if method is Int8Method.PTQ:
                quantized = nncf.quantize(model, nncf.Dataset(list(tiles)), advanced_parameters=ranges, **common)
            else:
                if reference is None or contract is None or not validation_cases:
                    raise BratsxError("int8 accuracy control needs the fp32 reference, the contract and validation "
                                      "cases")
                indices, validate = _dice_validation(reference, contract, validation_cases)
                quantized = nncf.quantize_with_accuracy_control(
                    model, nncf.Dataset(list(tiles)), nncf.Dataset(indices), validate,
                    max_drop=1.0 - INT8_GATE_DICE, drop_type=nncf.DropType.ABSOLUTE,
                    advanced_quantization_parameters=ranges,
                    advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                        max_num_iterations=MAX_REVERTED), **common)
    finally:
        nncf_logger.setLevel(level)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    quantized_inputs = {op.get_friendly_name() for op in quantized.get_ordered_ops()
                        if op.get_type_name() in QUANTIZED_OPS
                        and any(i.get_node().get_type_name() == "FakeQuantize" for i in op.input_values())}
    return [name for name in convolutions if name not in quantized_inputs]


def int8_gated(source: Path, out: Path, reference: Backend, contract: ModelContract, calibration: Sequence[Case],
               gate_cases: Sequence[Case], gate_source: str, *, keep_ends: bool = True,
               method: Int8Method | str = Int8Method.PTQ) -> Int8Result:
    """Quantize ``source`` on ``calibration``'s tiles into ``out`` and gate it against ``reference`` (fp32) on the
    held-out ``gate_cases``.

    Returns:
        The result; the caller removes the file when its gate failed.
    """
    started = time.perf_counter()
    tiles = list(calibration_tiles(calibration, contract))
    tiles = tiles[:: -(-len(tiles) // CALIBRATION_TILES)] if tiles else tiles
    kept = int8_from_onnx(source, out, tiles, keep_ends=keep_ends, method=method, reference=reference,
                          contract=contract, validation_cases=calibration)
    seconds = time.perf_counter() - started
    with OpenVinoBackend(out, precision="int8") as candidate:
        gate = accuracy_gate(reference, candidate, contract, gate_cases)
    return Int8Result(GateResult(gate.dice, gate.cases, INT8_GATE_DICE, gate.per_case),
                      [c.case_id for c in calibration], [c.case_id for c in gate_cases], gate_source,
                      Int8Method(method).value, kept, seconds)
