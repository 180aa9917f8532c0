"""From a canonical image to region masks: preprocessing, sliding window, paste back.

The steps every consumer of a model file shares (``bratsx infer``, the export accuracy gates, the
bench): normalise and crop as the model's contract says, predict the brain box tile by tile, paste
the probabilities into the full volume, and threshold.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..contract import ModelContract
from ..preprocessing import paste, preprocess
from ..sliding_window import sliding_window_predict

__all__ = ["predict_probabilities"]


def predict_probabilities(
    image: np.ndarray,
    contract: ModelContract,
    run: Callable[[np.ndarray], np.ndarray],
    overlap: float = 0.5,
    batch_size: int = 1,
) -> np.ndarray:
    """Probabilities over a whole case.

    Args:
        image: float32 canonical ``(4, z, y, x)`` image, as :func:`bratsx.imageio.load_case` gives.
        contract: the model's contract (patch size, crop margin).
        run: a backend's ``run``: tiles to probabilities.
        overlap: sliding-window overlap.
        batch_size: tiles per call of ``run``.

    Returns:
        float32 ``(C, z, y, x)`` probabilities, 0 outside the brain's box.
    """
    ready = preprocess(image, contract.crop_margin)
    probabilities = sliding_window_predict(ready.image, contract.patch_size, run, overlap, batch_size, ready.mask)
    return paste(probabilities, ready.box, ready.full_shape)
