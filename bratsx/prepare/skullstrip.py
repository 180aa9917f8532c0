"""Brain extraction with deepbet's networks on ONNX Runtime, offline, with no torch at run time.

deepbet (MIT, Fisch et al. 2024) ships its two TorchScript networks inside its PyPI wheel: a
bounding-box network on the volume at 128^3 and a mask network on the brain's box at 256^3 (about
8.7 MB each). :func:`onnx_from_deepbet` exports both once to ONNX into a cache folder (this step needs
torch and deepbet, the ``prepare`` extra, and no network); :func:`brain_mask` then runs them through
ONNX Runtime, reproducing deepbet's ``BrainExtraction.run_model`` and post-processing step by step in
numpy (nearest-exact resizing, 0.5-99.5 percentile scaling, largest component, holes filled).

The mask is checked before use: a brain outside :data:`~bratsx.prepare.atlas.PLAUSIBLE_BRAIN_ML`
stops the case (:class:`SkullStripError`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import warnings
from enum import Enum
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import CaseError
from ..extras import missing_extra, optional_import
from .atlas import PLAUSIBLE_BRAIN_ML

__all__ = ["SYNTHSTRIP", "SkullStripError", "SkullStripper", "brain_mask", "cpu_session", "default_cache",
           "onnx_from_deepbet", "parse_skull_strip", "plausible_mask"]

log = logging.getLogger(__name__)

#: deepbet's input sizes: the whole volume for the box, the box for the mask.
SMALL_SHAPE = (128, 128, 128)
MASK_SHAPE = (256, 256, 256)
BOX_MARGIN = 0.1
NETWORKS = ("bbox_model", "model")


class SkullStripper(str, Enum):
    """Brain extraction choices: deepbet's bundled networks, or none for skull-stripped inputs."""

    DEEPBET = "deepbet"
    NONE = "none"


#: ``--skull-strip synthstrip:PATH``: SynthStrip with the user's weights (:mod:`.synthstrip`).
SYNTHSTRIP = "synthstrip:"


def parse_skull_strip(text: str) -> str:
    """A ``--skull-strip`` value checked: ``deepbet``, ``none`` or ``synthstrip:PATH`` (an existing file).

    Raises:
        BratsxError: anything else, or a weights file that does not exist (one line).
    """
    from ..errors import BratsxError

    if text.lower().startswith(SYNTHSTRIP):
        weights = Path(text[len(SYNTHSTRIP):]).expanduser()
        if not weights.is_file():
            raise BratsxError(f"--skull-strip {text}: no such weights file {weights}")
        return SYNTHSTRIP + str(weights)
    choices = [s.value for s in SkullStripper]
    if text.lower() not in choices:
        raise BratsxError(f"--skull-strip {text}: choose one of {', '.join(choices)} or synthstrip:PATH (SynthStrip "
                          "weights you have)")
    return text.lower()


class SkullStripError(CaseError):
    """A brain mask that cannot be right (empty, too small, too large)."""


def default_cache() -> Path:
    """Where the exported networks live: ``~/.cache/bratsx/skullstrip``."""
    return Path.home() / ".cache" / "bratsx" / "skullstrip"


def _deepbet_weights() -> tuple[Path, str]:
    """deepbet's TorchScript folder (its ``utils.DATA_PATH``/models) and version, without importing it."""
    spec = importlib.util.find_spec("deepbet")
    if spec is None or spec.origin is None:
        raise missing_extra("deepbet", "skullstrip-export", "its networks' one-time export; --skull-strip none "
                                                            "for skull-stripped inputs")
    return Path(spec.origin).resolve().parents[1] / "data" / "models", importlib.metadata.version("deepbet")


def _cached(cache: Path) -> dict[str, Path] | None:
    """The newest complete export in ``cache``, if any."""
    for folder in sorted(cache.glob("deepbet-*"), reverse=True):
        paths = {name: folder / f"{name}.onnx" for name in NETWORKS}
        if all(p.is_file() for p in paths.values()):
            return paths
    return None


def onnx_from_deepbet(cache: Path | None = None) -> dict[str, Path]:
    """deepbet's two networks as ONNX files in ``cache``, exported from the installed wheel if not there yet.

    Returns:
        ``{"bbox_model": path, "model": path}``.

    Raises:
        BratsxError: the files are not cached and deepbet or torch is missing.
    """
    cache = cache or default_cache()
    if importlib.util.find_spec("deepbet") is None and (cached := _cached(cache)):
        return cached
    weights, version = _deepbet_weights()
    folder = cache / f"deepbet-{version}"
    paths = {name: folder / f"{name}.onnx" for name in NETWORKS}
    if all(p.is_file() for p in paths.values()):
        return paths
    torch = optional_import("torch", "skullstrip-export", purpose="exporting deepbet's networks to ONNX, once")
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in paths.items():
        network = torch.jit.load(str(weights / f"{name}.pt"), map_location="cpu").eval()
        shape = SMALL_SHAPE if name == "bbox_model" else MASK_SHAPE
        log.info("exporting deepbet %s to %s", name, path)
        with atomic_path(path, suffix=".onnx") as temporary, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's notes on itself and on instance norm
            torch.onnx.export(network, (torch.zeros(1, 1, *shape),), str(temporary), dynamo=False,
                              opset_version=17, input_names=["image"], output_names=["probabilities"])
    return paths


def _resize_nearest(volume: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """torch's ``interpolate(mode="nearest-exact")``: source index ``floor((i + 0.5) * in / out)``."""
    indices = [np.minimum(((np.arange(o) + 0.5) * (i / o)).astype(np.int64), i - 1)
               for i, o in zip(volume.shape, shape)]
    return volume[np.ix_(*indices)]


def _normalise(volume: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = np.clip((volume - low) / (high - low), 0.0, 1.0)
    scaled = (scaled - scaled.mean()) / scaled.std(ddof=1)
    return (0.226 * scaled + 0.449).astype(np.float32)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


def _box(mask_small: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """deepbet's ``get_bbox_with_margin``: the brain's box on the full grid, 10% margin each side."""
    box = []
    for axis, size in enumerate(shape):
        others = tuple(a for a in range(3) if a != axis)
        found = np.nonzero(mask_small.mean(axis=others) > 0.02)[0]
        if found.size == 0:
            return ()
        scale = size / mask_small.shape[axis]
        centre = round(scale * (found.max() + 1 + found.min()) / 2)
        extent = round((1 + 2 * BOX_MARGIN) * scale * (found.max() + 1 - found.min()))
        box.append(slice(max(0, int(centre - extent / 2)), min(size, int(centre + extent / 2))))
    return tuple(box)


def cpu_session(path: Path):
    ort = optional_import("onnxruntime", "cpu", purpose="skull stripping")

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def brain_mask(volume: np.ndarray, networks: dict[str, Path]) -> np.ndarray:
    """The brain of a T1-like volume in RAS-canonical index order (as deepbet expects).

    Args:
        volume: 3D array, axes towards R, A, S.
        networks: from :func:`onnx_from_deepbet`.

    Returns:
        Boolean mask of ``volume``'s shape; empty when no brain was found.
    """
    from scipy import ndimage

    volume = np.nan_to_num(volume.astype(np.float32))
    small = _resize_nearest(volume, SMALL_SHAPE)
    low, high = (float(q) for q in np.quantile(small, (0.005, 0.995)))
    if high <= low:
        return np.zeros(volume.shape, bool)
    probabilities = cpu_session(networks["bbox_model"]).run(
        None, {"image": _normalise(small, low, high)[None, None]})[0]
    box = _box(_largest_component(probabilities[0, 1] > 0.5).astype(np.float32), volume.shape)
    if not box:
        return np.zeros(volume.shape, bool)
    crop = _resize_nearest(volume[box], MASK_SHAPE)
    probabilities = cpu_session(networks["model"]).run(None, {"image": _normalise(crop, low, high)[None, None]})[0]
    mask = np.zeros(volume.shape, bool)
    inside = _resize_nearest(probabilities[0, 1], mask[box].shape) > 0.5
    mask[box] = ndimage.binary_fill_holes(_largest_component(inside))
    return mask


def plausible_mask(case_id: str, mask: np.ndarray, voxel_ml: float) -> float:
    """The mask's volume in mL, or a :class:`SkullStripError` when no brain can have it."""
    volume_ml = float(mask.sum()) * voxel_ml
    low, high = PLAUSIBLE_BRAIN_ML
    if not low <= volume_ml <= high:
        raise SkullStripError(case_id, f"skull stripping found a brain of {volume_ml:.0f} mL, outside the "
                                       f"plausible {low:.0f}-{high:.0f} mL; check the reference sequence "
                                       f"(or pass --skull-strip none if it is already skull-stripped)")
    return volume_ml
