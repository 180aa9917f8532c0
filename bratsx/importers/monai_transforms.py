"""A MONAI bundle's preprocessing, inferer and post-processing, mapped onto the bratsx contract or refused.

bratsx reproduces a bundle only where it can compute the same thing, so every transform and inferer setting is
checked against what :mod:`bratsx.runtime.model_grid` and :mod:`bratsx.sliding_window` do, and anything else is
refused in one line that names it (nothing is written). Supported, as in MONAI's ``brats_mri_segmentation``:

- preprocessing: ``LoadImaged``, ``EnsureChannelFirstd``, ``EnsureTyped`` (float32), ``Orientationd`` (the
  orientation the network sees), ``Spacingd`` (the spacing it sees; bilinear), ``NormalizeIntensityd`` (channel-
  wise, with or without ``nonzero``, no fixed subtrahend or divisor);
- inferer: ``SlidingWindowInferer`` with a fixed ``roi_size`` (the tile), one ``overlap`` (tile step
  ``1 - overlap``, MONAI's tile placement), ``mode="constant"`` or ``mode="gaussian"`` with the default
  ``sigma_scale`` 0.125 (:attr:`bratsx.sliding_window.Blend.MONAI_GAUSSIAN`), zero padding;
- post-processing: ``Activationsd(sigmoid=True)``, ``Invertd`` (bratsx writes every output on its input's grid),
  ``AsDiscreted(threshold=0.5)``, the model zoo's ``Lambdad`` painting ET, then TC, then WT as BraTS labels 4, 1, 2
  (what bratsx's :func:`~bratsx.labels.labels_from_regions` does), ``SaveImaged`` (bratsx writes its own files).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BratsxError
from ..resample import Resampling
from ..sliding_window import Blend

__all__ = ["BundleInference", "inference_from_bundle", "instantiated"]

_PREPROCESSING = "LoadImaged, EnsureChannelFirstd, EnsureTyped, Orientationd, Spacingd, NormalizeIntensityd"
#: MONAI inferer modes and the blends that compute them.
_BLENDS = {"constant": Blend.CONSTANT, "gaussian": Blend.MONAI_GAUSSIAN}
_POSTPROCESSING = "Activationsd, Invertd, AsDiscreted, Lambdad (BraTS labels), SaveImaged"
#: The model zoo's label painting: ``torch.where(x[[ET]] > 0, 4, torch.where(x[[TC]] > 0, 1, torch.where(x[[WT]] >
#: 0, 2, 0)))``, read with its three channel indices.
_LABEL_PAINTING = re.compile(r"lambdax:torch\.where\(x\[\[(\d)\]\]>0,4,torch\.where\(x\[\[(\d)\]\]>0,1,"
                             r"torch\.where\(x\[\[(\d)\]\]>0,2,0\)\)\)")


@dataclass(frozen=True)
class BundleInference:
    """What a bundle does around its network, in the contract's terms.

    Attributes:
        orientation: nibabel axis codes the network sees (``Orientationd``), ``None`` without one.
        target_spacing: spacing (mm, along ``orientation``'s axes) the network sees (``Spacingd``), or ``None``.
        resampling: the contract's ``resampling`` for ``target_spacing`` (first order for data and logits).
        normalization: one ``NormalizeIntensity`` scheme per input channel.
        patch_size: the inferer's ``roi_size``.
        tile_step: ``1 - overlap``.
        blend: the inferer's ``mode`` as a :class:`~bratsx.sliding_window.Blend` value.
        sw_batch_size: the inferer's windows per forward pass (speed only).
    """

    orientation: str | None
    target_spacing: tuple[float, float, float] | None
    resampling: dict[str, dict[str, Any]] | None
    normalization: dict[str, Any]
    patch_size: tuple[int, int, int]
    tile_step: float
    blend: str
    sw_batch_size: int


def _refuse(where: str, what: str, supported: str) -> BratsxError:
    return BratsxError(f"{where}: {what} is not something bratsx reproduces exactly; it runs {supported}")


def _preprocessing(transforms: Sequence[Any], where: str) -> dict[str, Any]:
    from monai.transforms import (
        EnsureChannelFirstd,
        EnsureTyped,
        LoadImaged,
        NormalizeIntensityd,
        Orientationd,
        Spacingd,
    )

    found: dict[str, Any] = {"orientation": None, "spacing": None, "normalization": None}
    for transform in transforms:
        name = type(transform).__name__
        if isinstance(transform, (LoadImaged, EnsureChannelFirstd)):
            continue
        if isinstance(transform, EnsureTyped):
            if transform.converter.dtype not in (None, "float32") and str(transform.converter.dtype) != "torch.float32":
                raise _refuse(where, f"preprocessing EnsureTyped(dtype={transform.converter.dtype})", "float32 input")
        elif isinstance(transform, Orientationd):
            orientation = transform.ornt_transform
            labels = None if orientation.labels is None else tuple(map(tuple, orientation.labels))
            if orientation.axcodes is None or orientation.as_closest_canonical or \
                    labels not in (None, (("L", "R"), ("P", "A"), ("I", "S"))):
                raise _refuse(where, "preprocessing Orientationd without plain axcodes", "Orientationd(axcodes=...)")
            found["orientation"] = "".join(orientation.axcodes).upper()
        elif isinstance(transform, Spacingd):
            spacing = transform.spacing_transform
            modes = {str(getattr(m, "value", m)) for m in transform.mode}
            if len(spacing.pixdim) != 3 or modes != {"bilinear"} or spacing.diagonal:
                raise _refuse(where, f"preprocessing Spacingd(pixdim={list(spacing.pixdim)}, mode={sorted(modes)}, "
                              f"diagonal={spacing.diagonal})", "Spacingd with three pixdims, bilinear, not diagonal")
            found["spacing"] = tuple(float(p) for p in spacing.pixdim)
        elif isinstance(transform, NormalizeIntensityd):
            normalizer = transform.normalizer
            if not normalizer.channel_wise or normalizer.subtrahend is not None or normalizer.divisor is not None:
                raise _refuse(where, f"preprocessing NormalizeIntensityd(channel_wise={normalizer.channel_wise}, "
                              f"subtrahend={normalizer.subtrahend}, divisor={normalizer.divisor})",
                              "NormalizeIntensityd(channel_wise=True) with its own statistics")
            found["normalization"] = {"scheme": "NormalizeIntensity", "nonzero": bool(normalizer.nonzero)}
        else:
            raise _refuse(where, f"preprocessing transform {name}", _PREPROCESSING)
    if found["normalization"] is None:
        raise BratsxError(f"{where}: no NormalizeIntensityd in the preprocessing; bratsx imports bundles whose "
                          "network input is normalised by it (as brats_mri_segmentation's)")
    return found


def _inferer(inferer: Any, where: str, divisor: int) -> tuple[tuple[int, int, int], float, str, int]:
    from monai.inferers import SlidingWindowInferer

    if type(inferer) is not SlidingWindowInferer:
        raise _refuse(where, f"inferer {type(inferer).__name__}", "SlidingWindowInferer")
    roi = tuple(int(r) for r in inferer.roi_size) if isinstance(inferer.roi_size, Sequence) else ()
    if len(roi) != 3 or min(roi) <= 0 or any(r % divisor for r in roi):
        raise _refuse(where, f"SlidingWindowInferer roi_size {inferer.roi_size}",
                      f"three fixed sizes, each a multiple of the network's {divisor}")
    overlaps = set(inferer.overlap) if isinstance(inferer.overlap, Sequence) else {inferer.overlap}
    if len(overlaps) != 1 or not 0.0 <= float(next(iter(overlaps))) < 1.0:
        raise _refuse(where, f"SlidingWindowInferer overlap {inferer.overlap}", "one overlap in [0, 1) for all axes")
    mode = str(getattr(inferer.mode, "value", inferer.mode))
    sigmas = set(inferer.sigma_scale) if isinstance(inferer.sigma_scale, Sequence) else {inferer.sigma_scale}
    if mode not in _BLENDS or (mode == "gaussian" and sigmas != {0.125}):
        raise _refuse(where, f"SlidingWindowInferer mode {mode!r} (sigma_scale {inferer.sigma_scale})",
                      "mode 'constant', or 'gaussian' with the default sigma_scale 0.125")
    padding = str(getattr(inferer.padding_mode, "value", inferer.padding_mode))
    if padding != "constant" or float(inferer.cval) != 0.0 or inferer.with_coord:
        raise _refuse(where, f"SlidingWindowInferer padding {padding!r} (cval {inferer.cval}, with_coord "
                      f"{inferer.with_coord})", "zero padding, without coordinates")
    return roi, 1.0 - float(next(iter(overlaps))), _BLENDS[mode].value, int(inferer.sw_batch_size)


def _target_name(entry: Any) -> str:
    target = entry.get("_target_", "") if isinstance(entry, dict) else ""
    return str(target).rsplit(".", 1)[-1]


def _postprocessing(config: Any, where: str, regions: Sequence[str]) -> None:
    transforms = config.get("transforms") if isinstance(config, dict) else None
    if _target_name(config) != "Compose" or not isinstance(transforms, list):
        raise BratsxError(f"{where}: 'postprocessing' is not a Compose of listed transforms; bratsx reads "
                          f"{_POSTPROCESSING}")
    activated = thresholded = False
    for entry in transforms:
        name = _target_name(entry)
        if name == "Activationsd":
            if entry.get("sigmoid") is not True or entry.get("softmax") or entry.get("other"):
                raise _refuse(where, "post-processing Activationsd without sigmoid=True", "sigmoid region outputs")
            activated = True
        elif name == "AsDiscreted":
            if float(entry.get("threshold", -1)) != 0.5 or entry.get("argmax") or entry.get("to_onehot"):
                raise _refuse(where, "post-processing AsDiscreted other than threshold=0.5",
                              "AsDiscreted(threshold=0.5)")
            thresholded = True
        elif name == "Lambdad":
            painted = _LABEL_PAINTING.fullmatch(re.sub(r"[\s$]", "", str(entry.get("func", ""))))
            if painted is None or [regions[int(i)] for i in painted.groups()] != ["ET", "TC", "WT"]:
                raise _refuse(where, f"post-processing Lambdad func {entry.get('func')!r}",
                              "the model zoo's BraTS label painting (ET -> 4, else TC -> 1, else WT -> 2)")
        elif name not in ("Invertd", "SaveImaged"):
            raise _refuse(where, f"post-processing transform {name or entry!r}", _POSTPROCESSING)
    if not (activated and thresholded):
        raise BratsxError(f"{where}: the post-processing does not end in sigmoid regions thresholded at 0.5 "
                          "(Activationsd(sigmoid=True), AsDiscreted(threshold=0.5)); bratsx imports region models")


def instantiated(parser: Any, key: str, where: str) -> Any:
    """The config's ``key`` built by the parser (its code run, as MONAI runs it); a failure as one line."""
    try:
        return parser.get_parsed_content(key)
    except Exception as error:  # the parser raises whatever the config's code raises
        first = str(error).splitlines()[0] if str(error) else ""
        raise BratsxError(f"{where}: {key!r} could not be instantiated ({type(error).__name__}: {first})") from error


def inference_from_bundle(parser: Any, where: str, divisor: int, regions: Sequence[str]) -> BundleInference:
    """Read a parsed bundle's ``preprocessing``, ``inferer`` and ``postprocessing``.

    Args:
        parser: the bundle's ``monai.bundle.ConfigParser`` (preprocessing and inferer are instantiated through it;
            post-processing is read as written, never run).
        where: the config file, for messages.
        divisor: what every tile size must be a multiple of.
        regions: the BraTS region of each output channel.

    Raises:
        BratsxError: one line naming the first transform or setting bratsx does not reproduce.
    """
    for key in ("preprocessing", "inferer", "postprocessing"):
        if key not in parser:
            raise BratsxError(f"{where}: no {key!r}; bratsx imports bundles whose inference config defines "
                              "preprocessing, inferer and postprocessing")
    preprocessing = instantiated(parser, "preprocessing", where)
    found = _preprocessing(getattr(preprocessing, "transforms", [preprocessing]), where)
    patch, tile_step, blend, sw_batch_size = _inferer(instantiated(parser, "inferer", where), where, divisor)
    _postprocessing(parser.get("postprocessing"), where, regions)
    spacing = found["spacing"]
    linear = Resampling(order=1, force_separate_z=False).to_dict()
    resampling = None if spacing is None else {"data": linear, "logits": linear}
    return BundleInference(found["orientation"], spacing, resampling, found["normalization"], patch, tile_step,
                           blend, sw_batch_size)
