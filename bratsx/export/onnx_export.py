"""Checkpoint to ONNX: the eval-mode network (with its output activation inside, for bratsx's own models), and its
contract.

The graph takes ``image`` float32 ``[N, C_in, D, H, W]`` (N dynamic, D/H/W fixed to the training patch) and
returns float32 ``[N, C, D, H, W]``: for bratsx's own models ``probabilities`` (sigmoid WT/TC/ET for ``regions``
models, softmax over four classes for ``labels`` models); for imported models, whose contract says
``outputs="logits"``, the raw ``logits``, which the runtime averages before the activation as their frameworks do
(:attr:`~bratsx.contract.ModelContract.outputs`). No backend needs to know which: the runtime reads the contract.
The :class:`~bratsx.contract.ModelContract` goes into the model's ``metadata_props`` as JSON.
"""

from __future__ import annotations

import json
import logging
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import onnx
import torch
from torch import nn

from .. import __version__
from ..atomic import atomic_path
from ..contract import CONTRACT_METADATA_KEY, PRECISION_METADATA_KEY
from ..labels import OutputMode
from ..network.checkpoint import TrainedModel
from ..network.unet import model_outputs
from .options import DEFAULT_OPSET

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "onnx_from_checkpoint",
    "save_onnx_atomic",
    "set_precision",
]

INPUT_NAME = "image"

logger = logging.getLogger(__name__)


def staged_mean(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """The mean of ``x`` over ``dims`` (kept), reduced one axis at a time in the order given, so that no float32
    sum runs over more than one axis's length (128 values, not the 2 million voxels of a 128^3 map).

    Between two means sits a sum over the axis just reduced (length 1 after ``keepdim``: an exact identity): OpenVINO's
    CPU plugin merges consecutive reductions of one kind into a single one-shot reduction, which put back exactly the
    error the staging removes (1.6e-3 relative in one variance of the full-size nnU-Net network's first
    normalisation, logits off by up to 0.04 at the output), and a sum between the means keeps them apart. No length
    is taken from the export's tile, so the same graph runs on whole brain boxes (``--window box``).
    """
    for stage, dim in enumerate(dims):
        if stage:
            x = x.sum(dim=dims[stage - 1], keepdim=True)
        x = x.mean(dim=dim, keepdim=True)
    return x


class StagedInstanceNorm3d(nn.Module):
    """InstanceNorm3d computed with reductions over one axis at a time (for export).

    ONNX Runtime's CPU InstanceNormalization (and a one-shot ReduceMean) sums the 2 million voxels of
    a 128^3 feature map in float32; the resulting error, 6e-5 relative for one normalisation and
    6.5e-4 through the default network, is far above PyTorch's. Reducing the last axis, then the
    next, then the first (128 values per stage, :func:`staged_mean`), with a two-pass variance, brings one
    normalisation to 7e-8 against float64 in both ONNX Runtime and OpenVINO. Same weights, same result as
    ``nn.InstanceNorm3d`` (biased variance).
    """

    def __init__(self, norm: nn.InstanceNorm3d) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight = nn.Parameter(norm.weight.detach().clone().view(1, -1, 1, 1, 1))
        self.bias = nn.Parameter(norm.bias.detach().clone().view(1, -1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - staged_mean(x, (4, 3, 2))
        variance = staged_mean(centred * centred, (4, 3, 2))
        return centred / torch.sqrt(variance + self.eps) * self.weight + self.bias


class StagedGroupNorm(nn.Module):
    """GroupNorm over 3D feature maps computed with reductions over one axis at a time (for export), for the same
    reason as :class:`StagedInstanceNorm3d`: exported as is, a GroupNorm becomes an InstanceNormalization over each
    group's channels and voxels at once (MONAI's SegResNet over a 240 x 240 x 160 window: 4e-4 relative error
    against PyTorch, refused). Same weights, same result as ``nn.GroupNorm`` (biased variance)."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.groups, self.eps = norm.num_groups, norm.eps
        self.weight = None if norm.weight is None else nn.Parameter(norm.weight.detach().clone().view(1, -1, 1, 1, 1))
        self.bias = None if norm.bias is None else nn.Parameter(norm.bias.detach().clone().view(1, -1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grouped = x.reshape(x.shape[0], self.groups, -1, *x.shape[2:])
        centred = grouped - staged_mean(grouped, (5, 4, 3, 2))
        out = (centred / torch.sqrt(staged_mean(centred * centred, (5, 4, 3, 2)) + self.eps)).reshape(x.shape)
        if self.weight is not None:
            out = out * self.weight
        return out + self.bias if self.bias is not None else out


def _with_staged_norms(network: nn.Module) -> nn.Module:
    """A copy of ``network`` whose InstanceNorm3d layers are :class:`StagedInstanceNorm3d` and whose GroupNorm layers
    are :class:`StagedGroupNorm`."""
    import copy

    staged = copy.deepcopy(network)
    for name, module in list(staged.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.InstanceNorm3d):
                setattr(module, child_name, StagedInstanceNorm3d(child))
            elif isinstance(child, nn.GroupNorm):
                setattr(module, child_name, StagedGroupNorm(child))
    return staged


class _Exported(nn.Module):
    """What the exported graph computes: the network (bratsx's, or an imported one returning logits) with staged
    normalisations, followed by its contract's output activation when the contract's outputs are probabilities."""

    def __init__(self, network: nn.Module, output_mode: OutputMode, activated: bool) -> None:
        super().__init__()
        self.network = _with_staged_norms(network)
        self.output_mode, self.activated = OutputMode(output_mode), activated

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return model_outputs(self.network(image), self.output_mode, self.activated)


def set_precision(model: onnx.ModelProto, precision: str) -> None:
    """Record the compute precision (``fp32``/``fp16``) in the model's metadata, for the runtime."""
    for entry in model.metadata_props:
        if entry.key == PRECISION_METADATA_KEY:
            entry.value = precision
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = PRECISION_METADATA_KEY, precision


def save_onnx_atomic(model: onnx.ModelProto, path: Path) -> Path:
    """Save an ONNX model (one file, no external data) so that ``path`` is never partial."""
    with atomic_path(path, suffix=".onnx") as temporary:
        onnx.save(model, str(temporary))
    return path


@contextmanager
def _quiet_exporter():
    """The exporter logs every optional operator library it skips (torchvision, ...); keep that quiet."""
    exporter_logger = logging.getLogger("torch.onnx")
    level = exporter_logger.level
    exporter_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        exporter_logger.setLevel(level)


def onnx_from_checkpoint(trained: TrainedModel, out: Path, opset: int = DEFAULT_OPSET, max_batch: int = 16) -> Path:
    """Export ``trained`` to ONNX with a dynamic batch (1..``max_batch``) and the contract embedded.

    Args:
        trained: from :func:`model_from_checkpoint`.
        out: the ``.onnx`` file to write.
        opset: ONNX opset version.
        max_batch: largest batch the graph declares.

    Returns:
        ``out``.
    """
    contract = trained.contract
    wrapper = _Exported(trained.network, contract.output_mode, contract.activated).eval()
    # A batch of two keeps the exporter from specialising the batch to a constant (it does for a batch
    # of one, and then rejects max_batch 1); the batch stays symbolic in the graph either way.
    example = torch.zeros(2, len(trained.contract.modality_order), *trained.contract.patch_size)
    batch = torch.export.Dim("batch", min=1, max=max(2, max_batch))
    scratch = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}.export.onnx")
    try:
        with warnings.catch_warnings(), _quiet_exporter():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (example,), str(scratch), input_names=[INPUT_NAME], output_names=[contract.outputs],
                dynamic_shapes={"image": {0: batch}}, opset_version=opset, dynamo=True, external_data=False,
                verbose=False,
            )
        model = onnx.load(str(scratch))
    finally:
        scratch.unlink(missing_ok=True)
    model.producer_name, model.producer_version = "bratsx", __version__
    model.doc_string = (
        f"bratsx {contract.output_mode.value} model: input '{INPUT_NAME}' float32 [N, {len(contract.modality_order)}, "
        f"{', '.join(map(str, contract.patch_size))}] ({', '.join(contract.modality_order)}), "
        f"output '{contract.outputs}' float32 [N, {len(contract.channel_names)}, ...] "
        f"({', '.join(contract.channel_names)})"
    )
    entry = model.metadata_props.add()
    entry.key, entry.value = CONTRACT_METADATA_KEY, json.dumps(contract.to_dict())
    set_precision(model, "fp32")
    return save_onnx_atomic(model, out)
