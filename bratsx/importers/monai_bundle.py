"""``bratsx import monai-bundle``: a MONAI bundle into an ordinary bratsx model folder.

A bundle (``configs/metadata.json``, ``configs/inference.json`` or ``.yaml``, ``models/model.pt``) is read with
``monai.bundle.ConfigParser``: the network is the config's ``network_def``, instantiated by the parser, and its
weights are loaded with ``torch.load(weights_only=True)`` (a file that needs more is refused, never loaded
unsafely; ``models/model.ts``, TorchScript, is code and is not read). Input channels come from the metadata's
``channel_def`` (T1c, T1, T2, FLAIR for ``brats_mri_segmentation``), output regions from its output
``channel_def`` (TC, WT, ET there): the exported graph reorders them to bratsx's WT, TC, ET, so the model folder
is an ordinary region model. Preprocessing, sliding window and post-processing are mapped onto the contract by
:mod:`bratsx.importers.monai_transforms`, which refuses what bratsx cannot reproduce. Export and verification
against PyTorch are bratsx's own (:func:`bratsx.export.pipeline.export_trained`, with the fp16 and int8 gates).

A bundle's config is code: parsing runs its ``$`` expressions (as MONAI does), so import bundles you trust.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from nibabel.orientations import axcodes2ornt, ornt_transform
from torch import nn

from ..contract import ModelContract, file_sha256
from ..errors import BratsxError
from ..export.pipeline import ExportReport, check_model_folder_target, export_trained
from ..geometry import CANONICAL_ORIENTATION
from ..labels import REGION_ORDER, LabelConvention, OutputMode
from ..network.checkpoint import TrainedModel
from .channels import modalities_for_channels, regions_for_channels
from .monai_transforms import BundleInference, inference_from_bundle, instantiated
from .options import MonaiBundleImport

__all__ = ["MonaiBundle", "RegionOrder", "bundle_channel_def", "import_monai_bundle", "load_bundle_weights",
           "read_bundle_folder"]

#: Inference configs a bundle may hold, in the order MONAI's scripts look for them.
CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")


@dataclass(frozen=True)
class MonaiBundle:
    """A checked bundle folder.

    Attributes:
        path: the bundle folder.
        metadata: ``configs/metadata.json``.
        config: the inference config file.
        weights: ``models/model.pt``.
    """

    path: Path
    metadata: dict[str, Any]
    config: Path
    weights: Path


def read_bundle_folder(path: Path | str) -> MonaiBundle:
    """Check a bundle folder's layout and read its metadata.

    Raises:
        BratsxError: not a folder, no ``configs/metadata.json`` or inference config, no ``models/model.pt``.
    """
    path = Path(path)
    metadata_file = path / "configs" / "metadata.json"
    if not path.is_dir() or not metadata_file.is_file():
        raise BratsxError(f"{path}: not a MONAI bundle (no configs/metadata.json); give the bundle folder that holds "
                          "configs/ and models/")
    try:
        metadata = json.loads(metadata_file.read_text())
    except (OSError, ValueError) as error:
        raise BratsxError(f"{metadata_file}: not readable JSON ({error})") from error
    config = next((path / "configs" / name for name in CONFIG_NAMES if (path / "configs" / name).is_file()), None)
    if config is None:
        raise BratsxError(f"{path / 'configs'}: no {' or '.join(CONFIG_NAMES)}; bratsx imports a bundle's inference "
                          "config")
    weights = path / "models" / "model.pt"
    if not weights.is_file():
        found = " (only model.ts, TorchScript, which bratsx does not load)" if (path / "models" / "model.ts"
                                                                              ).is_file() else ""
        raise BratsxError(f"{weights}: missing{found}; bratsx imports a bundle's weights from models/model.pt")
    return MonaiBundle(path, metadata if isinstance(metadata, dict) else {}, config, weights)


def load_bundle_weights(path: Path) -> dict[str, torch.Tensor]:
    """The network's state dict from ``models/model.pt``, loaded with ``torch.load(weights_only=True)``: a plain
    state dict, or one under ``"model"`` (what MONAI's ``CheckpointLoader`` reads with ``load_dict={"model": ...}``).

    Raises:
        BratsxError: the file needs more than tensors and plain data, is not a checkpoint, or holds no state dict.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise BratsxError(f"{path}: refused: it holds objects beyond tensors and plain data (torch.load "
                          "weights_only=True); bratsx never loads weights unsafely, save the network's state_dict "
                          "instead") from error
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise BratsxError(f"{path}: not a readable PyTorch checkpoint ({error})") from error
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise BratsxError(f"{path}: not a state dict of tensors (nor one under 'model')")
    return checkpoint


class RegionOrder(nn.Module):
    """A network whose output channels are reordered (to bratsx's WT, TC, ET)."""

    def __init__(self, network: nn.Module, order: Sequence[int]) -> None:
        super().__init__()
        self.network = network
        self.order = [int(i) for i in order]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.network(image)
        return torch.cat([logits[:, i : i + 1] for i in self.order], dim=1)


def bundle_channel_def(metadata: dict[str, Any], kind: str, where: str) -> dict[str, str]:
    """The ``channel_def`` of a bundle's one input (``kind`` ``inputs``) or output (``outputs``).

    Raises:
        BratsxError: the metadata does not describe exactly one, with its channels.
    """
    entries = metadata.get("network_data_format", {}).get(kind, {})
    if len(entries) != 1 or not isinstance(next(iter(entries.values())).get("channel_def"), dict):
        raise BratsxError(f"{where}: network_data_format.{kind} should describe one {kind[:-1]} with its channel_def; "
                          "bratsx reads the channels from it")
    return {str(k): str(v) for k, v in next(iter(entries.values()))["channel_def"].items()}


def _divisor(metadata: dict[str, Any]) -> int:
    """The size every input axis must be a multiple of, from the input's ``spatial_shape`` (``"8*n"``); 1 if none."""
    entries = metadata.get("network_data_format", {}).get("inputs", {})
    shape = next(iter(entries.values()), {}).get("spatial_shape", []) if entries else []
    factors = {int(m.group(1)) for s in shape if (m := re.fullmatch(r"\s*(\d+)\s*\*\s*n\s*", str(s)))}
    return max(factors) if factors else 1


def _orientation(inference: BundleInference, chosen: str | None, where: str) -> str:
    if inference.orientation is not None and chosen is not None and chosen.upper() != inference.orientation:
        raise BratsxError(f"--orientation {chosen}: the bundle's Orientationd says {inference.orientation}; leave "
                          "--orientation out")
    orientation = (inference.orientation or chosen or "").upper()
    if not orientation:
        raise BratsxError(f"{where}: no Orientationd in the preprocessing, so the network sees each file's stored "
                          "axes; say which it was trained on with --orientation (BraTS files are stored LPS)")
    try:
        axcodes2ornt(tuple(orientation))
    except ValueError:
        raise BratsxError(f"--orientation {orientation}: not three nibabel axis codes, one per axis (e.g. RAS, "
                          "LPS)") from None
    return orientation


def _canonical(values: Sequence[float], orientation: str) -> tuple[float, float, float]:
    """Per-axis values along ``orientation``'s axes, along the canonical axes."""
    canonical = [0.0, 0.0, 0.0]
    for axis, (new_axis, _) in enumerate(ornt_transform(axcodes2ornt(tuple(orientation)),
                                                        axcodes2ornt(tuple(CANONICAL_ORIENTATION)))):
        canonical[int(new_axis)] = float(values[axis])
    return tuple(canonical)


def _instantiated_network(parser: Any, where: str) -> nn.Module:
    if "network_def" not in parser:
        raise BratsxError(f"{where}: no 'network_def'; bratsx builds the network from it")
    network = instantiated(parser, "network_def", where)
    if not isinstance(network, nn.Module):
        raise BratsxError(f"{where}: 'network_def' is a {type(network).__name__}, not a PyTorch network")
    return network


def import_monai_bundle(bundle_dir: Path | str, out_dir: Path, options: MonaiBundleImport | None = None,
                        on_step: Callable[[str], None] | None = None) -> ExportReport:
    """Import a MONAI bundle into the model folder ``out_dir``.

    Everything (layout, metadata channels, transforms, inferer, post-processing, weights) is checked before the
    folder is written, and it is written atomically: a refused import leaves nothing.

    Args:
        bundle_dir: the bundle folder.
        out_dir: the model folder to write (an earlier model folder there is replaced).
        options: the orientation of a bundle without ``Orientationd``; export options.
        on_step: told each step's name as it starts.

    Returns:
        The export report (files written, agreement with PyTorch, gates).

    Raises:
        BratsxError: one line naming the file and the problem.
    """
    try:
        from monai.bundle import ConfigParser
    except ImportError:
        raise BratsxError("bratsx import monai-bundle reads bundles with MONAI's own ConfigParser: pip install "
                          "'bratsx[monai]'") from None
    options = options or MonaiBundleImport()
    step = on_step or (lambda name: None)
    check_model_folder_target(out_dir)
    step("reading the bundle")
    bundle = read_bundle_folder(bundle_dir)
    metadata_file = str(bundle.path / "configs" / "metadata.json")
    modalities = modalities_for_channels(bundle_channel_def(bundle.metadata, "inputs", metadata_file),
                                         options.channels, where=metadata_file)
    regions = regions_for_channels(bundle_channel_def(bundle.metadata, "outputs", metadata_file), metadata_file)
    parser = ConfigParser()
    try:
        parser.read_config(str(bundle.config))
    except Exception as error:  # json, yaml and the parser each raise their own
        raise BratsxError(f"{bundle.config}: not a readable bundle config ({error})") from error
    parser["bundle_root"] = str(bundle.path)
    divisor = _divisor(bundle.metadata)
    inference = inference_from_bundle(parser, str(bundle.config), divisor, regions)
    orientation = _orientation(inference, options.orientation, str(bundle.config))
    step("building the network and loading its weights")
    network = _instantiated_network(parser, str(bundle.config))
    try:
        network.load_state_dict(load_bundle_weights(bundle.weights))
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise BratsxError(f"{bundle.weights}: the weights do not fit the config's network_def ({first})") from error
    order = [regions.index(region.value) for region in REGION_ORDER]
    spacing = inference.target_spacing
    contract = ModelContract(
        patch_size=inference.patch_size, output_mode=OutputMode.REGIONS,
        network={"framework": "monai", "network_def": parser.get("network_def"), "divisor": divisor,
                 "output_channels": list(regions)},
        spacing=_canonical(spacing, orientation) if spacing else (1.0, 1.0, 1.0), modality_order=modalities,
        crop_margin=0, canonical_orientation=orientation, label_set=LabelConvention.BRATS2020,
        channel_normalization=(inference.normalization,) * len(modalities), target_spacing=spacing,
        resampling=inference.resampling, tile_step=inference.tile_step, blend=inference.blend,
        tile_placement="interval", crop_to_nonzero=False, outputs="logits",
        source={"framework": "monai", "bundle": str(bundle.path.resolve()), "name": bundle.metadata.get("name"),
                "version": bundle.metadata.get("version")},
    ).with_checkpoint(file_sha256(bundle.weights))
    trained = TrainedModel(RegionOrder(network, order).eval(), contract, bundle.weights)
    source = {"description": f"MONAI bundle {bundle.metadata.get('name') or bundle.path.name} "
                             f"{bundle.metadata.get('version') or ''}".strip(),
              "framework": "monai", "bundle": str(bundle.path.resolve()), "config": bundle.config.name,
              "checkpoint": None, "checkpoint_sha256": contract.checkpoint_sha256,
              "sw_batch_size": inference.sw_batch_size}
    return export_trained(trained, out_dir, source, options.export, step)
