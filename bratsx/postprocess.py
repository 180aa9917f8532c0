"""The post-processing spec: what happens to a segmentation's WT/TC/ET masks after the network, as plain data.

Since 2023 BraTS ranks by lesion-wise scores (:mod:`bratsx.lesionwise`), where every false-positive
component scores 0; most of the 2023 winners' lesion-wise gain came from post-processing chosen on
cross-validation. A :class:`PostprocessSpec` says, per region, which connected components to drop and
when to relabel enhancing tumour as necrotic core. It travels as a dict: in the ONNX contract
(:attr:`bratsx.contract.ModelContract.postprocess`), in a model folder's ``model.postprocess.json``
(written by ``bratsx postprocess tune``) and in ``bratsx infer --postprocess SPEC.json``.

:func:`apply_postprocess` is run by :func:`bratsx.runtime.segment.segment_case`, so infer, serve,
report, bench and the export gates all post-process alike. The steps:

0. The masks are nested as the written label map reads them (:func:`bratsx.labels.labels_from_regions`: ET
   wins over TC, TC over WT), so WT includes TC and TC includes ET (sigmoid outputs need not nest).
1. For WT, then TC, then ET: label the region's 26-connected components (the lesion-wise metric's
   connectivity) and drop each component smaller than the region's ``min_volume_mm3``, or smaller
   than ``min_largest_ratio`` times the region's largest component. Dropping a component of a region
   also clears the regions nested in it there (a dropped TC component becomes background in TC and ET
   but stays edema in WT).
2. When the case's total ET volume is above 0 and below ``et_to_ncr_below_mm3``, ET is relabelled as
   necrotic core (the BraTS 2021 rule): the voxels leave ET and stay in TC.

A spec with every threshold 0 (:data:`NO_POSTPROCESS`) changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .errors import BratsxError
from .labels import REGION_ORDER

__all__ = ["NO_POSTPROCESS", "SPEC_FORMAT", "PostprocessSpec", "apply_postprocess", "filter_components",
           "nest", "postprocess_override", "read_spec", "spec_of"]

#: ``format`` marker of a spec written as JSON.
SPEC_FORMAT = "bratsx-postprocess"
_REGIONS = tuple(region.value for region in REGION_ORDER)
_COMPONENTS = np.ones((3, 3, 3), bool)  # 26-connectivity, as the lesion-wise metric


def _per_region(values: Mapping[str, Any] | None, what: str) -> dict[str, float]:
    """``{"WT": x, "TC": y, "ET": z}`` from a partial mapping (missing regions 0), checked."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(_REGIONS))
    if unknown:
        raise BratsxError(f"post-processing spec: {what} names unknown region(s) {', '.join(unknown)}; "
                          f"the regions are {', '.join(_REGIONS)}")
    result = {}
    for region in _REGIONS:
        value = values.get(region, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise BratsxError(f"post-processing spec: {what} of {region} must be a number >= 0, got {value!r}")
        result[region] = float(value)
    return result


@dataclass(frozen=True, kw_only=True)
class PostprocessSpec:
    """How a segmentation's region masks are cleaned (module docstring: the steps and their order).

    Attributes:
        min_volume_mm3: per region (WT, TC, ET), the smallest connected component kept, in mm^3
            (0: keep all).
        min_largest_ratio: per region, the smallest component kept as a fraction of the region's
            largest component (0: keep all).
        et_to_ncr_below_mm3: relabel ET as necrotic core when the case's total ET volume is above 0
            and below this, in mm^3 (0: never).
    """

    min_volume_mm3: Mapping[str, float] = field(default_factory=dict)
    min_largest_ratio: Mapping[str, float] = field(default_factory=dict)
    et_to_ncr_below_mm3: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_volume_mm3", _per_region(self.min_volume_mm3, "min_volume_mm3"))
        object.__setattr__(self, "min_largest_ratio", _per_region(self.min_largest_ratio, "min_largest_ratio"))
        if any(ratio > 1 for ratio in self.min_largest_ratio.values()):
            raise BratsxError(f"post-processing spec: min_largest_ratio must be at most 1, got "
                              f"{dict(self.min_largest_ratio)}")
        et_rule = _per_region({"ET": self.et_to_ncr_below_mm3}, "et_to_ncr_below_mm3")["ET"]
        object.__setattr__(self, "et_to_ncr_below_mm3", et_rule)

    @property
    def is_identity(self) -> bool:
        """True when the spec changes nothing."""
        return not (any(self.min_volume_mm3.values()) or any(self.min_largest_ratio.values())
                    or self.et_to_ncr_below_mm3)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, with a format marker and version (read back by :meth:`from_dict`)."""
        return {"format": SPEC_FORMAT, "format_version": 1, "min_volume_mm3": dict(self.min_volume_mm3),
                "min_largest_ratio": dict(self.min_largest_ratio), "et_to_ncr_below_mm3": self.et_to_ncr_below_mm3}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PostprocessSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            BratsxError: not a mapping, another format, an unknown key, or a threshold that is not a number >= 0.
        """
        if not isinstance(values, Mapping):
            raise BratsxError(f"post-processing spec: expected a JSON object, got {type(values).__name__}")
        if values.get("format", SPEC_FORMAT) != SPEC_FORMAT:
            raise BratsxError(f"post-processing spec: format {values.get('format')!r} is not {SPEC_FORMAT!r}")
        known = {"format", "format_version", "min_volume_mm3", "min_largest_ratio", "et_to_ncr_below_mm3"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BratsxError(f"post-processing spec: unknown key(s) {', '.join(unknown)}; expected "
                              f"{', '.join(sorted(known - {'format', 'format_version'}))}")
        for key in ("min_volume_mm3", "min_largest_ratio"):
            if not isinstance(values.get(key, {}), Mapping):
                raise BratsxError(f"post-processing spec: {key} must map regions to numbers, "
                                  f"got {values[key]!r}")
        return cls(min_volume_mm3=values.get("min_volume_mm3", {}),
                   min_largest_ratio=values.get("min_largest_ratio", {}),
                   et_to_ncr_below_mm3=values.get("et_to_ncr_below_mm3", 0.0))


#: The spec that changes nothing.
NO_POSTPROCESS = PostprocessSpec()


def read_spec(path: Path | str) -> PostprocessSpec:
    """A spec from a JSON file (as ``bratsx infer --postprocess SPEC.json`` takes it).

    Raises:
        BratsxError: one line naming the file: unreadable, not JSON, or not a valid spec.
    """
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BratsxError(f"{path}: not a readable post-processing spec ({error})") from error
    try:
        return PostprocessSpec.from_dict(values)
    except BratsxError as error:
        raise BratsxError(f"{path}: {error}") from None


def spec_of(contract_postprocess: Mapping[str, Any] | None) -> PostprocessSpec:
    """The spec a model carries (its contract's ``postprocess`` dict), or :data:`NO_POSTPROCESS` when none."""
    return NO_POSTPROCESS if contract_postprocess is None else PostprocessSpec.from_dict(contract_postprocess)


def postprocess_override(choice: str, contract_postprocess: Mapping[str, Any] | None) -> PostprocessSpec:
    """The spec ``bratsx infer --postprocess`` names: ``model`` (the model's own: its contract's, set by its
    folder's tuned spec), ``none``, or the path of a spec JSON file. Resolved here so that every record
    says which spec its case got.

    Raises:
        BratsxError: the file cannot be read or is not a spec.
    """
    if choice == "model":
        return spec_of(contract_postprocess)
    if choice == "none":
        return NO_POSTPROCESS
    if not Path(choice).is_file():
        raise BratsxError(f"--postprocess {choice!r}: neither 'model', 'none' nor a spec JSON file")
    return read_spec(choice)


def filter_components(mask: np.ndarray, min_voxels: float, min_ratio: float) -> np.ndarray:
    """The voxels of ``mask``'s 26-connected components to drop: smaller than ``min_voxels``, or than
    ``min_ratio`` times the largest component. Boolean, ``mask``'s shape; nothing when both are 0."""
    if (min_voxels <= 0 and min_ratio <= 0) or not mask.any():
        return np.zeros_like(mask, dtype=bool)
    components, count = ndimage.label(mask, structure=_COMPONENTS)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    sizes[0] = 0
    limit = max(float(min_voxels), float(min_ratio) * float(sizes.max()))
    dropped = np.flatnonzero((sizes < limit) & (np.arange(count + 1) > 0))
    return np.isin(components, dropped) if dropped.size else np.zeros_like(mask, dtype=bool)


def nest(regions: np.ndarray) -> np.ndarray:
    """Make ``(3, ...)`` WT/TC/ET masks nested in place (TC includes ET, WT includes TC), as the label map reads
    them; returns ``regions``."""
    regions[1] |= regions[2]
    regions[0] |= regions[1]
    return regions


def _brain_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of a 3-D mask (None when empty): the component work is confined to it."""
    where = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    if where[0].size == 0:
        return None
    return tuple(slice(int(found[0]), int(found[-1]) + 1) for found in where)


def apply_postprocess(regions: np.ndarray, spacing: Sequence[float], spec: PostprocessSpec) -> np.ndarray:
    """Apply ``spec`` to ``(3, z, y, x)`` boolean WT/TC/ET masks, in place (steps in the module docstring).

    Args:
        regions: nested region masks in :data:`~bratsx.labels.REGION_ORDER`; modified and returned.
        spacing: voxel size in mm along the three spatial axes (volumes are in mm^3).
        spec: what to do.

    Returns:
        ``regions``.
    """
    if spec.is_identity:
        return regions
    box = _brain_box(regions[0] | regions[1] | regions[2])
    if box is None:
        return regions
    voxel_mm3 = float(np.prod(spacing))
    cropped = regions[(slice(None), *box)]  # a view: changes land in ``regions``
    nest(cropped)
    for channel, region in enumerate(_REGIONS):
        dropped = filter_components(cropped[channel], spec.min_volume_mm3[region] / voxel_mm3,
                                    spec.min_largest_ratio[region])
        cropped[channel:, dropped] = False
    et_mm3 = np.count_nonzero(cropped[2]) * voxel_mm3
    if 0 < et_mm3 < spec.et_to_ncr_below_mm3:
        cropped[2] = False  # the voxels stay in TC: they become necrotic core
    return regions
