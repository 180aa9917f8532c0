"""INT8 model files: NNCF post-training quantization of the fp32 model for OpenVINO's CPU plugin.

The fp32 ONNX is read by OpenVINO, NNCF inserts FakeQuantize operations around the convolutions (and
only them: the element-wise arithmetic of the staged instance normalisations, which NNCF would otherwise
quantize too, stays in f32, as the fp16 model keeps it in fp32; so do the first convolution, on the
z-scored images, the output head and the transposed convolutions, a few % of the FLOPs) with ranges
collected on calibration tiles (the MIXED preset: symmetric int8 weights, asymmetric int8 activations, which
suit the LeakyReLU outputs; activation ranges from per-tile quantiles), and the result is saved as an
OpenVINO IR pair (``model.int8.xml`` + ``model.int8.bin``). IR rather than an int8 ONNX QDQ model: it is
what NNCF's OpenVINO path produces and what the CPU plugin turns into VNNI/AMX int8 kernels directly, while
ONNX Runtime's CPU provider has no fast int8 3D convolution, so a QDQ file would serve OpenVINO only anyway.

Calibration tiles are what the network sees at inference: each calibration case prepared by
:func:`~bratsx.runtime.segment.prepare_case` (loaded, cropped, z-scored) and cut into the tiles the sliding
window plans for it. The quantized model is then gated like fp16, on whole cases through ``segment_case``:
refused unless the WT/TC/ET Dice against fp32 is at least :data:`INT8_GATE_DICE` on every case.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..cases import Case
from ..contract import ModelContract
from ..errors import BratsxError
from ..extras import optional_import
from ..printed import printed_to_debug_log
from ..runtime.backends import Backend, OpenVinoBackend
from ..runtime.segment import prepare_case
from ..sliding_window import Placement, planned_tiles
from .fp16 import GateResult, accuracy_gate

__all__ = ["INT8_GATE_ARITHMETIC", "INT8_GATE_DICE", "calibration_tiles", "int8_from_onnx", "int8_gated"]

logger = logging.getLogger(__name__)

#: Per-region Dice between int8 and fp32 masks an int8 export must reach on every calibration case. Lower
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


def int8_from_onnx(source: Path, out: Path, tiles: Sequence[np.ndarray]) -> Path:
    """Quantize an fp32 bratsx ONNX model to an int8 OpenVINO IR (``out`` the ``.xml``; the ``.bin`` beside it).

    Args:
        source: the fp32 ``model.onnx``.
        out: the ``.xml`` to write.
        tiles: calibration inputs, each float32 ``(1, C, *patch)``.

    Raises:
        BratsxError: nncf or openvino is not installed, or there is no calibration tile.
    """
    ov = optional_import("openvino", "int8", purpose="INT8 export")
    nncf = optional_import("nncf", "int8", purpose="INT8 export")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet
    if not tiles:
        raise BratsxError("int8 quantization needs calibration tiles; none came from the calibration cases")
    model = ov.Core().read_model(str(source))
    kept = sorted({op.get_type_name() for op in model.get_ops()} - set(QUANTIZED_OPS))
    convolutions = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    ends = [convolutions[0], convolutions[-1]]  # the image's first convolution and the output head
    # Activation ranges from the mean of per-tile quantiles, not of minima and maxima: a few extreme voxels
    # per tile would otherwise stretch the 256 levels (ET Dice vs fp32 0.984 with min/max, 0.990 with these)
    ranges = AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MEAN_QUANTILE)
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)  # NNCF logs each operation it leaves out, on a handler of its own
    try:
        with printed_to_debug_log(logger, "NNCF"):  # and draws progress bars on stdout
            quantized = nncf.quantize(model, nncf.Dataset(list(tiles)), preset=nncf.QuantizationPreset.MIXED,
                                      subset_size=len(tiles), advanced_parameters=ranges,
                                      ignored_scope=nncf.IgnoredScope(names=ends, types=kept, validate=False))
    finally:
        nncf_logger.setLevel(level)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return out


def int8_gated(source: Path, out: Path, reference: Backend, contract: ModelContract, cases: Sequence[Case]
               ) -> GateResult:
    """Quantize ``source`` on ``cases``' tiles into ``out`` and gate it against ``reference`` (fp32) on them.

    Returns:
        The gate (with :data:`INT8_GATE_DICE` as its threshold); the caller refuses the file when it failed.
    """
    tiles = list(calibration_tiles(cases, contract))
    int8_from_onnx(source, out, tiles[:: -(-len(tiles) // CALIBRATION_TILES)] if tiles else tiles)
    with OpenVinoBackend(out, precision="int8") as candidate:
        gate = accuracy_gate(reference, candidate, contract, cases)
    return replace(gate, threshold=INT8_GATE_DICE)
