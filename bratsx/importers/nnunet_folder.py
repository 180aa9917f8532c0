"""An nnU-Net v2 results folder, read and checked, and the bratsx contract it implies (no torch).

A results folder is one trained configuration, ``.../DatasetXXX_Name/<Trainer>__<Plans>__<configuration>``, with
``plans.json``, ``dataset.json`` (and ``dataset_fingerprint.json``) and ``fold_N/checkpoint_*.pth``.
:func:`read_results_folder` checks all of it before anything is built, so that a bad folder gives one line and
nothing is written; :func:`contract_from_results` turns plans and dataset description into a
:class:`~bratsx.contract.ModelContract` that :mod:`bratsx.runtime.model_grid` applies as nnU-Net's predictor does.

Supported: 3D configurations (``3d_fullres``, ``3d_lowres`` on its own, custom 3D ones) with nnU-Net's
``DefaultPreprocessor``, ``resample_data_or_seg_to_shape`` and the normalisation schemes of
:data:`~bratsx.runtime.model_grid.NNUNET_NORMALIZATION_SCHEMES`; BraTS label sets: three regions (whole tumour, tumour
core, enhancing tumour, with ``regions_class_order``) or four labels (background, necrotic core, edema,
enhancing tumour), told apart by their names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contract import ModelContract
from ..errors import BratsxError
from ..labels import Modality, OutputMode
from ..resample import Resampling
from ..runtime.model_grid import NNUNET_NORMALIZATION_SCHEMES
from .channels import REGION_NAMES, modalities_for_channels
from .options import DEFAULT_CHECKPOINT

__all__ = ["NnunetResults", "contract_from_results", "read_results_folder"]

_RESAMPLING_FUNCTION = "resample_data_or_seg_to_shape"
_SUPPORTED = "3D configurations (3d_fullres, 3d_lowres or a custom 3D one)"
#: Names of the BraTS tissues in dataset.json, compared lower-case without spaces or punctuation.
_TISSUE_NAMES = {"necrotic": ("necroticcore", "necrotic", "necrosis", "ncr", "nonenhancingtumorcore", "ncrnet",
                              "necroticnonenhancing", "necrotictumorcore"),
                 "edema": ("edema", "oedema", "ed", "peritumoraledema", "snfh"),
                 "enhancing": ("enhancingtumor", "enhancingtumour", "enhancing", "et")}


@dataclass(frozen=True)
class NnunetResults:
    """A checked results folder.

    Attributes:
        path: the trained configuration folder.
        plans: ``plans.json``.
        dataset: ``dataset.json``.
        configuration_name: e.g. ``3d_fullres``.
        configuration: that configuration, its ``inherits_from`` resolved.
        checkpoints: fold number -> checkpoint file, in fold order.
    """

    path: Path
    plans: dict[str, Any]
    dataset: dict[str, Any]
    configuration_name: str
    configuration: dict[str, Any]
    checkpoints: dict[int, Path]


def _read_json(path: Path, folder: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BratsxError(f"{folder}: not an nnU-Net results folder (no {path.name}); give the trained configuration "
                          "folder, e.g. .../Dataset137_BraTS2021/nnUNetTrainer__nnUNetPlans__3d_fullres")
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BratsxError(f"{path}: not readable JSON ({error})") from error
    if not isinstance(values, dict):
        raise BratsxError(f"{path}: not an nnU-Net description (a JSON object is expected)")
    return values


def _resolved_configuration(plans: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    """A configuration with its ``inherits_from`` chain applied, as nnU-Net's ``PlansManager`` does."""
    configurations = plans.get("configurations", {})
    if name not in configurations:
        raise BratsxError(f"{path / 'plans.json'}: no configuration {name!r} (the folder name's last part); it has "
                          f"{', '.join(configurations) or 'none'}")
    configuration = dict(configurations[name])
    seen = {name}
    while "inherits_from" in configuration:
        parent = configuration.pop("inherits_from")
        if parent in seen or parent not in configurations:
            raise BratsxError(f"{path / 'plans.json'}: configuration {name!r} inherits from {parent!r}, which is "
                              "missing or circular")
        seen.add(parent)
        configuration = {**configurations[parent], **configuration}
    return configuration


def _check_configuration(name: str, configuration: dict[str, Any], path: Path) -> None:
    if len(configuration.get("patch_size", ())) != 3:
        raise BratsxError(f"{path}: configuration {name!r} is 2D; bratsx imports {_SUPPORTED}")
    if configuration.get("previous_stage") or "cascade" in name:
        raise BratsxError(f"{path}: configuration {name!r} is a cascade stage, which needs the low-resolution stage's "
                          f"segmentation as input; bratsx imports {_SUPPORTED}")
    if configuration.get("preprocessor_name", "DefaultPreprocessor") != "DefaultPreprocessor":
        raise BratsxError(f"{path}: preprocessor {configuration['preprocessor_name']!r} is not supported; bratsx "
                          "reproduces nnU-Net's DefaultPreprocessor")
    for kind in ("data", "probabilities"):
        function = configuration.get(f"resampling_fn_{kind}", _RESAMPLING_FUNCTION)
        if function != _RESAMPLING_FUNCTION:
            raise BratsxError(f"{path}: resampling function {function!r} for {kind} is not supported; bratsx "
                              f"reproduces nnU-Net's {_RESAMPLING_FUNCTION}")
    unknown = sorted(set(configuration.get("normalization_schemes", [])) - set(NNUNET_NORMALIZATION_SCHEMES))
    if unknown:
        raise BratsxError(f"{path}: normalisation scheme {unknown[0]!r} is not supported; bratsx runs "
                          f"{', '.join(NNUNET_NORMALIZATION_SCHEMES)}")


def _fold_numbers(path: Path, folds: Sequence[int] | None) -> list[int]:
    found = sorted(int(m.group(1)) for d in path.iterdir() if (m := re.fullmatch(r"fold_(\d+)", d.name)) and d.is_dir())
    if folds is None:
        if not found:
            raise BratsxError(f"{path}: no fold_N folder; nothing was trained here")
        return found
    missing = [f for f in folds if f not in found]
    if missing:
        raise BratsxError(f"{path}: no fold_{missing[0]} folder (folds here: {', '.join(map(str, found)) or 'none'})")
    return list(folds)


def read_results_folder(path: Path | str, folds: Sequence[int] | None = None,
                        checkpoint: str = DEFAULT_CHECKPOINT) -> NnunetResults:
    """Read and check an nnU-Net v2 results folder.

    Args:
        path: the trained configuration folder.
        folds: fold numbers to import; ``None``: every ``fold_N`` present.
        checkpoint: the checkpoint file name in each fold folder.

    Raises:
        BratsxError: one line: not a results folder, a 2D or cascade configuration, an unsupported
            preprocessing, a missing fold or checkpoint.
    """
    path = Path(path)
    if not path.is_dir():
        raise BratsxError(f"{path}: not a folder; give an nnU-Net results folder (Trainer__Plans__configuration)")
    plans = _read_json(path / "plans.json", path)
    dataset = _read_json(path / "dataset.json", path)
    parts = path.name.split("__")
    if len(parts) != 3:
        raise BratsxError(f"{path}: not an nnU-Net results folder name (expected Trainer__Plans__configuration)")
    name = parts[2]
    configuration = _resolved_configuration(plans, name, path)
    _check_configuration(name, configuration, path)
    checkpoints = {}
    for fold in _fold_numbers(path, folds):
        file = path / f"fold_{fold}" / checkpoint
        if not file.is_file():
            raise BratsxError(f"{file}: missing; train fold {fold} to the end or pick another --checkpoint")
        checkpoints[fold] = file
    return NnunetResults(path, plans, dataset, name, configuration, checkpoints)


def _simplified(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _named(labels: Mapping[str, Any], names: dict[str, tuple[str, ...]], path: Path, what: str) -> dict[str, Any]:
    """Each wanted entry of ``labels`` by its name (see ``names``); refuses a label set that does not name them all."""
    found = {}
    for key, aliases in names.items():
        matches = [value for label, value in labels.items() if _simplified(label) in aliases]
        if len(matches) != 1:
            raise BratsxError(f"{path}: dataset.json's labels ({', '.join(labels)}) do not name the BraTS {what} "
                              f"one each; bratsx imports BraTS region or label models")
        found[key] = matches[0]
    return found


def _model_labels(dataset: dict[str, Any], path: Path) -> tuple[OutputMode, dict[str, Any]]:
    labels = {k: v for k, v in dataset.get("labels", {}).items() if v != 0 and _simplified(k) != "background"}
    if any(isinstance(v, (list, tuple)) for v in labels.values()):
        if len(labels) != 3 or "regions_class_order" not in dataset:
            raise BratsxError(f"{path}: a region model needs three regions and regions_class_order in dataset.json; "
                              f"it has {len(labels)} regions")
        regions = _named(labels, REGION_NAMES, path, "regions (whole tumour, tumour core, enhancing tumour)")
        wanted = [sorted(int(v) for v in regions[r]) for r in ("WT", "TC", "ET")]
        return OutputMode.REGIONS, {"labels": dataset["labels"], "regions_class_order":
                                    [int(v) for v in dataset["regions_class_order"]], "regions": wanted}
    if sorted(int(v) for v in labels.values()) != [1, 2, 3]:
        raise BratsxError(f"{path}: a label model needs labels 1, 2 and 3 beside background; it has "
                          f"{sorted(labels.values())}")
    tissues = _named(labels, _TISSUE_NAMES, path, "tissues (necrotic core, edema, enhancing tumour)")
    necrotic, edema, enhancing = (int(tissues[t]) for t in ("necrotic", "edema", "enhancing"))
    return OutputMode.LABELS, {"labels": dataset["labels"], "regions_class_order": None,
                               "regions": [sorted([necrotic, edema, enhancing]), sorted([necrotic, enhancing]),
                                           [enhancing]]}


def _normalization(results: NnunetResults) -> tuple[dict[str, Any], ...]:
    configuration = results.configuration
    schemes = configuration["normalization_schemes"]
    use_mask = configuration.get("use_mask_for_norm", [False] * len(schemes))
    intensities = results.plans.get("foreground_intensity_properties_per_channel", {})
    normalization = []
    for channel, (scheme, masked) in enumerate(zip(schemes, use_mask)):
        entry: dict[str, Any] = {"scheme": scheme, "use_mask": bool(masked)}
        if scheme == "CTNormalization":
            entry["intensity"] = {k: float(v) for k, v in intensities[str(channel)].items()}
        normalization.append(entry)
    return tuple(normalization)


def contract_from_results(results: NnunetResults, channels: Mapping[int, Modality] | None = None
                          ) -> ModelContract:
    """The bratsx contract of an nnU-Net results folder (mirror axes and network come from the checkpoints later).

    Args:
        results: from :func:`read_results_folder`.
        channels: the user's channel mapping (``--channels``), over dataset.json's names.

    Raises:
        BratsxError: channels that cannot be mapped, or a label set that is not BraTS regions or labels.
    """
    dataset, configuration = results.dataset, results.configuration
    modalities = modalities_for_channels(dataset.get("channel_names", dataset.get("modality", {})), channels,
                                         where=str(results.path / "dataset.json"))
    output_mode, model_labels = _model_labels(dataset, results.path / "dataset.json")
    transpose = [int(a) for a in results.plans.get("transpose_forward", [0, 1, 2])]
    target = [float(s) for s in configuration["spacing"]]
    canonical_spacing = [0.0, 0.0, 0.0]
    for network_axis, canonical_axis in enumerate(transpose):
        canonical_spacing[canonical_axis] = target[network_axis]
    resampling = {"data": Resampling.from_dict(configuration.get("resampling_fn_data_kwargs", {})).to_dict(),
                  "logits": Resampling.from_dict(configuration.get("resampling_fn_probabilities_kwargs",
                                                                   {"order": 1})).to_dict()}
    architecture = configuration["architecture"]
    return ModelContract(
        patch_size=tuple(configuration["patch_size"]), output_mode=output_mode,
        network={"framework": "nnunetv2", "network_class_name": architecture["network_class_name"],
                 "arch_kwargs": architecture["arch_kwargs"],
                 "arch_kwargs_requiring_import": architecture.get("_kw_requires_import", [])},
        spacing=tuple(canonical_spacing), modality_order=modalities, crop_margin=0,
        channel_normalization=_normalization(results), target_spacing=tuple(target), resampling=resampling,
        transpose_forward=tuple(transpose), model_labels=model_labels, outputs="logits",
        source={"framework": "nnunetv2", "results": str(results.path.resolve()),
                "configuration": results.configuration_name, "folds": list(results.checkpoints)},
    )
