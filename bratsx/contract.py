"""The model contract: everything a runtime needs to feed a trained network and read its output.

Training writes it into every checkpoint; export copies it into the model file's metadata; the
runtime reads it back and needs nothing else. It is plain data (JSON-able), with no torch inside.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__
from .errors import BratsxError
from .geometry import CANONICAL_ORIENTATION
from .labels import BRATS_CHANNELS, REGION_ORDER, LabelConvention, OutputMode, Tissue, check_channel_name
from .preprocessing import DEFAULT_MARGIN
from .sliding_window import Blend

__all__ = [
    "CONTRACT_METADATA_KEY",
    "MODEL_OUTPUTS",
    "NORMALIZATION",
    "PRECISION_METADATA_KEY",
    "ModelContract",
    "ensemble_differences",
    "file_sha256",
    "read_onnx_contract",
]

#: Key of the JSON contract in an ONNX model's ``metadata_props``.
CONTRACT_METADATA_KEY = "bratsx_contract"
#: Metadata key in which export records a model file's compute precision ("fp32" or "fp16").
PRECISION_METADATA_KEY = "bratsx_precision"

#: How inputs are normalised (see :func:`bratsx.preprocessing.preprocess`).
NORMALIZATION = "zscore-per-modality-in-brain-mask"

#: What a model file may return (a contract's ``outputs``): its probabilities (the output activation inside the
#: graph) or its raw logits (the runtime applies the activation after averaging).
MODEL_OUTPUTS = ("probabilities", "logits")


def _channel_names(output_mode: OutputMode) -> tuple[str, ...]:
    if output_mode is OutputMode.REGIONS:
        return tuple(region.value for region in REGION_ORDER)
    return ("background", *(tissue.name.lower() for tissue in Tissue))


@dataclass(frozen=True)
class ModelContract:
    """What a model expects and returns.

    Attributes:
        patch_size: spatial input size of one tile, canonical axes.
        output_mode: ``regions`` (sigmoid WT, TC, ET) or ``labels`` (softmax over 4 classes).
        network: the network configuration (``NetworkConfig.to_dict()``).
        spacing: median voxel spacing (mm, canonical axes) of the training data; inputs are not
            resampled, so cases should come at about this spacing.
        modality_order: input channels, by name: BraTS modalities (:data:`~bratsx.labels.BRATS_CHANNELS`) or, for
            an imported model, others (``adc``), whose files a case names (:func:`bratsx.cases.discover`).
        normalization: input normalisation scheme.
        crop_margin: voxels the training cache kept around the brain's bounding box (inference crops
            the box exactly, as nnU-Net: :data:`bratsx.preprocessing.INFERENCE_MARGIN`).
        canonical_orientation: nibabel axis codes of the arrays the network sees (cases are loaded in
            :data:`~bratsx.geometry.CANONICAL_ORIENTATION`; an imported model trained in another orientation,
            e.g. a MONAI bundle's ``Orientationd(axcodes="RAS")``, gets its input reoriented to this one).
        label_values: label value of each tissue in the BraTS 2023 convention, which outputs in
            ``labels`` mode index (channel i = class i).
        label_set: the label set of the data it was trained on (``bratsx train --labels``, or read from
            the training labels), the set its outputs are written in when a case states none; ``None``
            in model folders written before label sets were recorded (they still load).
        validation_dice: mean validation Dice per region, when known.
        checkpoint_sha256: hash of the checkpoint a model file was exported from.
        bratsx_version: version that trained the model.
        postprocess: the post-processing spec the model's segmentations get
            (:meth:`bratsx.postprocess.PostprocessSpec.to_dict`); ``None``: none. A model folder's tuned spec
            (``bratsx postprocess tune``) replaces the one embedded at export when the folder is opened.

    Imported models (nnU-Net v2: :mod:`bratsx.importers.nnunet`; MONAI bundles: :mod:`bratsx.importers.monai_bundle`)
    carry what their framework does around the
    network; bratsx's own models leave these at their defaults, and the runtime applies them in
    :mod:`bratsx.runtime.model_grid` only when ``channel_normalization`` is set:

        channel_normalization: one scheme per input channel (``{"scheme": "ZScoreNormalization",
            "use_mask": true}``, ``CTNormalization`` with ``intensity`` statistics, ``NoNormalization``,
            ``RescaleTo01Normalization``), applied after cropping to the non-zero box; ``None``: bratsx's own
            :data:`NORMALIZATION`.
        target_spacing: spacing (mm, network axes) the network sees; ``None``: no resampling.
        resampling: ``{"data": ..., "logits": ...}`` :class:`bratsx.resample.Resampling` dicts.
        transpose_forward: canonical axes in the order the network sees them (nnU-Net's ``transpose_forward``).
        tile_step: tile step as a fraction of the patch (nnU-Net's ``tile_step_size``; ``1 - overlap`` of a MONAI
            inferer): the sliding window's overlap unless the user sets one.
        blend: how overlapping tiles are weighed (:class:`bratsx.sliding_window.Blend`): ``gaussian``, nnU-Net's
            importance map; ``constant``, every voxel of a tile alike (MONAI's default mode); ``monai-gaussian``,
            MONAI's ``mode="gaussian"`` map. Model folders written before this field said ``gaussian: true|false``,
            read as ``gaussian`` or ``constant``.
        tile_placement: how tiles are spread (:class:`bratsx.sliding_window.Placement`: ``even``, as nnU-Net;
            ``interval``, as MONAI's ``sliding_window_inference``).
        crop_to_nonzero: crop the case to its non-zero box before the network (nnU-Net); ``False``: the whole
            volume, as a MONAI bundle without a crop transform.
        mirror_axes: network axes mirrored by test-time augmentation.
        model_labels: the model's own labels (``labels``: name -> value or region values, from ``dataset.json``),
            ``regions_class_order`` for region models, and ``regions``: which raw label values make up WT,
            TC and ET; ``None``: bratsx's fixed regions and classes.
        source: where an imported model came from (framework, folder, folds, checkpoints).
        outputs: what the model file returns (:data:`MODEL_OUTPUTS`): ``probabilities``, the output activation
            inside the graph (bratsx's own models, and model folders imported before this field existed), or
            ``logits`` (imported models): the runtime then averages the raw logits over tiles, mirrorings and folds
            and applies the activation once, exactly as nnU-Net and MONAI do. From probabilities it can only
            recover logits up to where a float32 sigmoid saturates (:data:`bratsx.runtime.segment.LOGIT_CAP`),
            and a trained nnU-Net network's logits go far beyond that.
    """

    patch_size: tuple[int, int, int]
    output_mode: OutputMode
    network: dict[str, Any]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    modality_order: tuple[str, ...] = BRATS_CHANNELS
    normalization: str = NORMALIZATION
    crop_margin: int = DEFAULT_MARGIN
    canonical_orientation: str = CANONICAL_ORIENTATION
    label_values: dict[str, int] = field(
        default_factory=lambda: {t.name.lower(): v for t, v in LabelConvention.BRATS2023.tissue_values.items()}
    )
    label_set: LabelConvention | None = None
    validation_dice: dict[str, float] | None = None
    checkpoint_sha256: str | None = None
    bratsx_version: str = __version__
    postprocess: dict[str, Any] | None = None
    channel_normalization: tuple[dict[str, Any], ...] | None = None
    target_spacing: tuple[float, float, float] | None = None
    resampling: dict[str, dict[str, Any]] | None = None
    transpose_forward: tuple[int, int, int] = (0, 1, 2)
    tile_step: float = 0.5
    blend: str = "gaussian"
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    tile_placement: str = "even"
    crop_to_nonzero: bool = True
    model_labels: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    outputs: str = "probabilities"

    def __post_init__(self) -> None:
        if self.outputs not in MODEL_OUTPUTS:
            raise ValueError(f"outputs must be one of {', '.join(MODEL_OUTPUTS)}, not {self.outputs!r}")
        object.__setattr__(self, "blend", Blend(self.blend).value)
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "modality_order", tuple(map(check_channel_name, self.modality_order)))
        if len(set(self.modality_order)) != len(self.modality_order):
            raise ValueError(f"modality_order names a channel twice: {', '.join(self.modality_order)}")
        object.__setattr__(self, "transpose_forward", tuple(int(a) for a in self.transpose_forward))
        object.__setattr__(self, "mirror_axes", tuple(int(a) for a in self.mirror_axes))
        if self.channel_normalization is not None:
            object.__setattr__(self, "channel_normalization", tuple(dict(c) for c in self.channel_normalization))
        if self.target_spacing is not None:
            object.__setattr__(self, "target_spacing", tuple(float(s) for s in self.target_spacing))
        object.__setattr__(self, "output_mode", OutputMode(self.output_mode))
        if self.label_set is not None:
            object.__setattr__(self, "label_set", LabelConvention(self.label_set))

    @property
    def activated(self) -> bool:
        """Whether the model file returns probabilities (its activation inside), not logits."""
        return self.outputs == "probabilities"

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Names of the output channels, e.g. ``("WT", "TC", "ET")``."""
        return _channel_names(self.output_mode)

    def with_checkpoint(self, sha256: str) -> ModelContract:
        """A copy recording the checkpoint it was exported from."""
        return replace(self, checkpoint_sha256=sha256)

    def with_validation_dice(self, dice: dict[str, float]) -> ModelContract:
        """A copy carrying the validation Dice per region."""
        return replace(self, validation_dice={str(k): float(v) for k, v in dice.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        values = asdict(self)
        values["patch_size"] = list(self.patch_size)
        values["spacing"] = list(self.spacing)
        values["modality_order"] = list(self.modality_order)
        values["transpose_forward"] = list(self.transpose_forward)
        values["mirror_axes"] = list(self.mirror_axes)
        if self.channel_normalization is not None:
            values["channel_normalization"] = list(self.channel_normalization)
        if self.target_spacing is not None:
            values["target_spacing"] = list(self.target_spacing)
        values["output_mode"] = self.output_mode.value
        values["label_set"] = None if self.label_set is None else self.label_set.value
        values["channel_names"] = list(self.channel_names)
        return values

    @property
    def other_channels(self) -> tuple[str, ...]:
        """The input channels that are no BraTS modality (an ADC map): what synthetic cases and web uploads lack."""
        return tuple(c for c in self.modality_order if c not in BRATS_CHANNELS)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelContract:
        """Inverse of :meth:`to_dict` (derived keys such as ``channel_names`` are ignored)."""
        known = {name for name in cls.__dataclass_fields__}
        if "gaussian" in values and "blend" not in values:  # written before ``blend``
            values = {**values, "blend": "gaussian" if values["gaussian"] else "constant"}
        return cls(**{k: v for k, v in values.items() if k in known})


#: What the models of an ensemble must share: their tiles are averaged, so they take the same inputs (shape and
#: channels) and return the same outputs.
_ENSEMBLE_FIELDS = {"patch_size": "patch size", "output_mode": "output mode", "modality_order": "input channels"}


def ensemble_differences(contracts: Sequence[ModelContract]) -> list[str]:
    """What the models of a would-be ensemble do not share (see :data:`_ENSEMBLE_FIELDS`), by name; empty when
    they can be averaged."""
    return [name for field_name, name in _ENSEMBLE_FIELDS.items()
            if len({getattr(c, field_name) for c in contracts}) > 1]


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file, read in chunks: how contracts and model folders name the files they come from."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_onnx_contract(path: Path | str) -> ModelContract:
    """Read the contract embedded by ``bratsx export`` in an ONNX model's metadata.

    Raises:
        BratsxError: one line saying which: the file cannot be read, is empty, is not an ONNX model
            (bytes that do not parse as one, or no graph), or carries no (or a damaged) bratsx contract.
    """
    import onnx

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BratsxError(f"{path}: cannot read the model file ({error.strerror or error})") from error
    if not data:
        raise BratsxError(f"{path}: empty file (0 bytes), not an ONNX model; export it again with 'bratsx export'")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as error:  # protobuf raises DecodeError, and others for odd bytes
        raise BratsxError(f"{path}: not an ONNX model (its bytes do not parse as one: {type(error).__name__})") \
            from error
    if model.ir_version == 0 or not model.HasField("graph"):
        raise BratsxError(f"{path}: not an ONNX model (no IR version or no graph in it)")
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    if CONTRACT_METADATA_KEY not in metadata:
        raise BratsxError(
            f"{path}: no bratsx contract in the model's metadata; bratsx runs only models made by "
            "'bratsx export', which records the preprocessing and outputs the model expects"
        )
    try:
        return ModelContract.from_dict(json.loads(metadata[CONTRACT_METADATA_KEY]))
    except (ValueError, TypeError) as error:
        raise BratsxError(f"{path}: the bratsx contract in the metadata is damaged ({error})") from error
