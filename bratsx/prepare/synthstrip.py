"""Brain extraction with SynthStrip weights the user provides (``--skull-strip synthstrip:PATH``), on ONNX Runtime.

SynthStrip (Hoopes et al. 2022, FreeSurfer) predicts a signed distance to the brain's surface with a
seven-level 3D U-Net (16 features doubling to at most 64, two 3x3x3 convolutions with leaky ReLU 0.2 per
level, max-pooling and nearest upsampling by 2, skip connections by concatenation, two more convolutions at
full resolution and one to the distance). Its weights are not redistributed with bratsx (FreeSurfer's
licence); a user who has them (``synthstrip.1.pt``, from FreeSurfer or ``pip install synthstrip``'s
download) passes the file. :func:`onnx_from_synthstrip` builds that network in PyTorch (written here from
the paper's and FreeSurfer's description of the architecture, with the same parameter names, so the state
dict loads strictly), loads the weights with ``weights_only=True`` and exports it once to ONNX in the cache,
named after the weights' SHA-256; :func:`synthstrip_mask` then runs without torch: the volume is put in
SynthStrip's orientation (L, I, A) on its 1 mm grid, padded to a multiple of 64 (at least 192) per axis,
scaled to [0, 1] by its minimum and 99th percentile, and the brain is where the distance is below 1 mm
(``mri_synthstrip``'s default border).

**What is tested**: with a random-weight network of this architecture written by the test (no weights
download): the state dict's names and shapes, ONNX against PyTorch, the cache, the mask's grid. The masks of
the real weights have **not** been checked here (the weights are not available on the development machine).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import BratsxError
from ..extras import optional_import

__all__ = ["BORDER_MM", "MIN_SIZE", "onnx_from_synthstrip", "strip_network", "synthstrip_mask"]

log = logging.getLogger(__name__)

#: Every axis is padded to a multiple of 64 (six poolings by 2), and to at least this many voxels.
MULTIPLE = 64
MIN_SIZE = 192
#: The brain is where the predicted signed distance is below this (mm).
BORDER_MM = 1.0
_FEATURES, _LEVELS, _MAX_FEATURES, _CONVS = 16, 7, 64, 2


def strip_network(torch):
    """SynthStrip's U-Net (see the module docstring) as a ``torch.nn.Module``, randomly initialised.

    Args:
        torch: the imported torch module (kept out of this module's imports).
    """
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, channels_in: int, channels_out: int, activate: bool = True) -> None:
            super().__init__()
            self.conv = nn.Conv3d(channels_in, channels_out, 3, 1, 1)
            self.activate = activate

        def forward(self, x):
            x = self.conv(x)
            return nn.functional.leaky_relu(x, 0.2) if self.activate else x

    class StripNetwork(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = [min(_FEATURES * 2 ** level, _MAX_FEATURES) for level in range(_LEVELS)]
            self.encoder, self.decoder, self.remaining = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
            channels, skips = 1, []
            for width in widths[:-1]:
                self.encoder.append(nn.ModuleList(Block(channels if i == 0 else width, width) for i in range(_CONVS)))
                channels = width
                skips.append(width)
            for width in reversed(widths[1:]):  # the bottom level and the five above it
                self.decoder.append(nn.ModuleList(Block(channels if i == 0 else width, width) for i in range(_CONVS)))
                channels = width + skips.pop()
            for _ in range(_CONVS):
                self.remaining.append(Block(channels, widths[0]))
                channels = widths[0]
            self.remaining.append(Block(channels, 1, activate=False))

        def forward(self, x):
            skips = []
            for blocks in self.encoder:
                for block in blocks:
                    x = block(x)
                skips.append(x)
                x = nn.functional.max_pool3d(x, 2)
            for blocks in self.decoder:
                for block in blocks:
                    x = block(x)
                x = torch.cat([nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"), skips.pop()], dim=1)
            for block in self.remaining:
                x = block(x)
            return x

    return StripNetwork()


def onnx_from_synthstrip(weights: Path, cache: Path) -> Path:
    """The SynthStrip network of ``weights`` as an ONNX file in ``cache`` (exported once per weights file).

    Args:
        weights: a SynthStrip checkpoint (a state dict, or a dict holding one as ``model_state_dict``).
        cache: where the export is kept.

    Raises:
        BratsxError: the file is missing or holds no SynthStrip weights (one line), or torch is not installed
            for the one-time export.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise BratsxError(f"{weights}: no such SynthStrip weights file (--skull-strip synthstrip:PATH)")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    path = Path(cache) / f"synthstrip-{digest}.onnx"
    if path.is_file():
        return path
    torch = optional_import("torch", "train", purpose="exporting SynthStrip's network to ONNX, once")
    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file it cannot unpickle safely
        raise BratsxError(f"{weights}: not a SynthStrip checkpoint torch can load safely ({type(error).__name__})"
                          ) from None
    state = state.get("model_state_dict", state) if isinstance(state, dict) else state
    network = strip_network(torch)
    try:
        network.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BratsxError(f"{weights}: these are not SynthStrip's weights ({first[:160]})") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting SynthStrip (%s) to %s", weights, path)
    with atomic_path(path, suffix=".onnx") as temporary, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network.eval(), (torch.zeros(1, 1, MULTIPLE, MULTIPLE, MULTIPLE),), str(temporary),
                          dynamo=False, opset_version=17, input_names=["image"], output_names=["distance"],
                          dynamic_axes={"image": {2: "d", 3: "h", 4: "w"}, "distance": {2: "d", 3: "h", 4: "w"}})
    return path


def _padded(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(MIN_SIZE, int(np.ceil(n / MULTIPLE)) * MULTIPLE) for n in shape)


def synthstrip_mask(volume: np.ndarray, network: Path) -> np.ndarray:
    """The brain of a volume on a 1 mm grid, in RAS-canonical index order (as :func:`.skullstrip.brain_mask`).

    Args:
        volume: 3D array, axes towards R, A, S, 1 mm voxels.
        network: from :func:`onnx_from_synthstrip`.

    Returns:
        Boolean mask of ``volume``'s shape.
    """
    from .skullstrip import cpu_session

    lia = np.nan_to_num(volume.astype(np.float32))[::-1, :, ::-1].transpose(0, 2, 1)  # R,A,S -> L,I,A
    shape = _padded(lia.shape)
    before = [(p - n) // 2 for p, n in zip(shape, lia.shape)]
    image = np.zeros(shape, np.float32)
    inside = tuple(slice(b, b + n) for b, n in zip(before, lia.shape))
    image[inside] = lia
    image -= image.min()
    high = float(np.percentile(image, 99))
    image = np.clip(image / high, 0.0, 1.0) if high > 0 else image
    distance = cpu_session(network).run(None, {"image": image[None, None]})[0][0, 0]
    mask = distance[inside] < BORDER_MM
    return np.ascontiguousarray(mask.transpose(0, 2, 1)[::-1, :, ::-1])  # L,I,A -> R,A,S
