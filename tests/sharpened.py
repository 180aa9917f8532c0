"""A tiny model whose decisions are firm: the tiny run's checkpoint with its output head scaled up.

The tiny test network is barely trained, so its logits sit near 0 and tiny arithmetic differences (fp16
accumulation, int8 rounding, blending logits instead of probabilities) flip many thresholded voxels. Scaling
the final 1x1x1 convolution's weights and bias scales every logit alike: the same masks, but only voxels on
their borders stay close to the threshold, as with a trained model. Tests that compare two implementations'
masks use it.
"""

from __future__ import annotations

from pathlib import Path

#: Factor applied to the output head (logits).
SHARPENING = 25.0


def sharpened_checkpoint(run: Path, out: Path, first_conv_scale: float = 1.0) -> Path:
    """The checkpoint of ``run`` with its full-resolution head scaled by :data:`SHARPENING`, saved as ``out``;
    optionally with its first convolution scaled by ``first_conv_scale`` too (1e6: fp16 activations overflow)."""
    from bratsx.network.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

    state = load_checkpoint(checkpoint_path(run))
    scales = {"heads.0.weight": SHARPENING, "heads.0.bias": SHARPENING,
              "encoder.0.0.0.weight": first_conv_scale, "encoder.0.0.0.bias": first_conv_scale}
    for key, scale in scales.items():
        state["model"][key] = state["model"][key] * scale
    return save_checkpoint(state, out)
