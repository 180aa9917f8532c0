"""Checks an exported model must pass: a valid graph, and ONNX Runtime agreeing with PyTorch.

The agreement is measured on random input and on a patch of a synthetic case (realistic intensities
and a tumour), as the largest absolute difference and as the normwise relative error
``||onnx - torch||_2 / ||torch||_2``. The gate uses the relative error: a single voxel can differ by
1e-3 where an instance norm divides by a near-zero variance (both frameworks are right to float
precision there), while a wrong graph moves the whole output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from ..errors import BratsxError
from ..labels import BRATS_CHANNELS
from ..preprocessing import preprocess
from ..synth import synthesize_case
from .onnx_export import TrainedModel

__all__ = ["Agreement", "FP32_TOLERANCE", "check_graph", "compare_with_torch", "verification_inputs"]

#: Largest relative error an fp32 export may show against PyTorch.
FP32_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Agreement:
    """How closely a model file reproduces PyTorch: worst max-abs and normwise relative error over ``inputs``."""

    max_abs: float
    max_rel: float
    inputs: tuple[str, ...]


def check_graph(path: Path) -> None:
    """``onnx.checker`` and strict shape inference; raises :class:`BratsxError` on failure."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
        onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise BratsxError(f"{path}: the exported graph is invalid ({error})") from error


def verification_inputs(trained: TrainedModel, seed: int = 0) -> dict[str, np.ndarray]:
    """A random batch of two and a preprocessed synthetic-case patch centred on its tumour."""
    patch = trained.contract.patch_size
    channels = len(trained.contract.modality_order)
    rng = np.random.default_rng(seed)
    random = rng.standard_normal((2, channels, *patch)).astype(np.float32)
    shape = tuple(max(int(p * 1.5), 32) for p in reversed(patch))  # synth takes (x, y, z)
    case = synthesize_case(shape, seed=seed, index=1)
    image = np.ascontiguousarray(case.image.transpose(0, 3, 2, 1), dtype=np.float32)  # to (z, y, x)
    # an imported model may take fewer channels, in its own order, or others (an ADC map): those get the synthetic
    # FLAIR, brain-like intensities, for comparing two runtimes on one input (not for accuracy)
    image = np.stack([image[BRATS_CHANNELS.index(c) if c in BRATS_CHANNELS else 0]
                      for c in trained.contract.modality_order])
    ready = preprocess(image)
    tumour = np.argwhere(case.labels.T[ready.box.slices] > 0)
    centre = tumour.mean(axis=0).astype(int) if len(tumour) else np.array(ready.image.shape[1:]) // 2
    padded = np.pad(ready.image, [(0, 0), *[(p, p) for p in patch]])
    start = [int(c) + p - p // 2 for c, p in zip(centre, patch)]
    tile = padded[(slice(None), *(slice(s, s + p) for s, p in zip(start, patch)))]
    return {"random": random, "synthetic case": np.ascontiguousarray(tile[None])}


def compare_with_torch(
    run: Callable[[np.ndarray], np.ndarray], trained: TrainedModel, inputs: dict[str, np.ndarray]
) -> Agreement:
    """Run each input through ``run`` (a model file's backend) and through PyTorch; the worst differences.

    Args:
        run: maps a float32 ``(N, 4, *patch)`` batch to what the model file returns (probabilities, or logits
            when its contract's ``outputs`` say so).
        trained: the PyTorch network and contract.
        inputs: named batches, from :func:`verification_inputs`.
    """
    from ..network.unet import model_outputs

    contract = trained.contract
    max_abs, max_rel = 0.0, 0.0
    for batch in inputs.values():
        with torch.no_grad():
            expected = model_outputs(trained.network(torch.from_numpy(batch)), contract.output_mode,
                                     contract.activated).numpy()
        got = np.asarray(run(batch), dtype=np.float32)
        if got.shape != expected.shape:
            raise BratsxError(f"the exported model returned shape {got.shape}, PyTorch {expected.shape}")
        difference = got.astype(np.float64) - expected
        max_abs = max(max_abs, float(np.abs(difference).max()))
        max_rel = max(max_rel, float(np.linalg.norm(difference) / max(np.linalg.norm(expected), 1e-12)))
    return Agreement(max_abs, max_rel, tuple(inputs))
