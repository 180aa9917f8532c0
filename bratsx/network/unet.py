"""The nnU-Net-style 3D U-Net.

Each resolution stage is two (3x3x3 conv -> InstanceNorm -> LeakyReLU 0.01) blocks; the encoder
downsamples with a stride-2 convolution at the start of each stage after the first, the decoder
upsamples with a 2x2x2 transposed convolution and concatenates the encoder's skip connection.
In training mode the network also returns deep-supervision outputs at the three finest
resolutions; in eval mode (inference, export) only the full-resolution output is computed.

The network returns logits; :func:`probabilities` applies the output mode's activation (sigmoid
for regions, softmax for labels), which export puts inside the ONNX graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..labels import MODALITY_ORDER, OutputMode

__all__ = ["NetworkConfig", "UNet3D", "probabilities"]

#: Number of finest decoder resolutions that get a deep-supervision head.
DEEP_SUPERVISION_HEADS = 3


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild the network; stored in checkpoints and model files.

    Attributes:
        features: channels per resolution stage, finest first; ``len(features)`` stages, so inputs
            must be divisible by ``2 ** (len(features) - 1)`` along every spatial axis.
        output_mode: ``regions`` (3 sigmoid channels) or ``labels`` (4-class softmax).
        in_channels: input modalities (FLAIR, T1, T1ce, T2).
        deep_supervision: return the coarser heads' outputs too in training mode.
        negative_slope: LeakyReLU slope.
    """

    features: tuple[int, ...] = (32, 64, 128, 256)
    output_mode: OutputMode = OutputMode.REGIONS
    in_channels: int = len(MODALITY_ORDER)
    deep_supervision: bool = True
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        object.__setattr__(self, "output_mode", OutputMode(self.output_mode))
        if len(self.features) < 2 or min(self.features) < 1:
            raise ValueError(f"features needs at least two positive entries, got {self.features}")

    @property
    def divisor(self) -> int:
        """Every spatial input size must be a multiple of this."""
        return 2 ** (len(self.features) - 1)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (for checkpoints and ONNX metadata)."""
        values = asdict(self)
        values["features"] = list(self.features)
        values["output_mode"] = self.output_mode.value
        return values

    @classmethod
    def from_dict(cls, values: dict) -> NetworkConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**values)


class _ConvNormAct(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, stride: int, negative_slope: float) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1),
            nn.InstanceNorm3d(out_channels, affine=True, track_running_stats=False),
            nn.LeakyReLU(negative_slope, inplace=True),
        )


class _Stage(nn.Sequential):
    """Two conv blocks; the first one may downsample with its stride."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, negative_slope: float) -> None:
        super().__init__(
            _ConvNormAct(in_channels, out_channels, stride, negative_slope),
            _ConvNormAct(out_channels, out_channels, 1, negative_slope),
        )


class UNet3D(nn.Module):
    """nnU-Net-style 3D U-Net for ``(N, 4, D, H, W)`` inputs.

    Args:
        config: architecture; defaults to features (32, 64, 128, 256) and region outputs.

    Forward returns logits ``(N, C, D, H, W)`` with ``C = config.output_mode.channels``. In training
    mode with deep supervision it returns a list, finest first: full, 1/2 and 1/4 resolution.
    """

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetworkConfig()
        features, slope = self.config.features, self.config.negative_slope
        out_channels = self.config.output_mode.channels
        self.encoder = nn.ModuleList(
            _Stage(self.config.in_channels if i == 0 else features[i - 1], f, 1 if i == 0 else 2, slope)
            for i, f in enumerate(features)
        )
        # Decoder lists are indexed by resolution level (0 = finest), for levels len-2 .. 0.
        levels = range(len(features) - 1)
        self.upsample = nn.ModuleList(
            nn.ConvTranspose3d(features[i + 1], features[i], kernel_size=2, stride=2) for i in levels
        )
        self.decoder = nn.ModuleList(_Stage(2 * features[i], features[i], 1, slope) for i in levels)
        self.heads = nn.ModuleList(
            nn.Conv3d(features[i], out_channels, kernel_size=1)
            for i in range(min(DEEP_SUPERVISION_HEADS, len(features) - 1))
        )
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        supervise = self.training and self.config.deep_supervision
        outputs = []
        for level in reversed(range(len(self.decoder))):
            x = self.upsample[level](x)
            x = self.decoder[level](torch.cat((skips[level], x), dim=1))
            if supervise and 0 < level < len(self.heads):
                outputs.append(self.heads[level](x))
        final = self.heads[0](x)
        if supervise:
            return [final, *reversed(outputs)]
        return final


def _init_weights(module: nn.Module) -> None:
    """He initialisation for the LeakyReLU slope, zero biases (as nnU-Net)."""
    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def probabilities(logits: torch.Tensor, output_mode: OutputMode) -> torch.Tensor:
    """Turn logits into probabilities: sigmoid per region, or softmax over the label classes."""
    if OutputMode(output_mode) is OutputMode.REGIONS:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def model_outputs(logits: torch.Tensor, output_mode: OutputMode, activated: bool) -> torch.Tensor:
    """What a model file returns for ``logits``: probabilities when its contract's outputs are ``activated``
    (:attr:`~bratsx.contract.ModelContract.activated`), else the logits themselves."""
    return probabilities(logits, output_mode) if activated else logits


def predict_tiles(
    network: nn.Module,
    tiles: np.ndarray,
    output_mode: OutputMode,
    device: torch.device | str,
    autocast_dtype: torch.dtype | None = None,
    activated: bool = True,
) -> np.ndarray:
    """Probabilities (or logits) of a batch of tiles: what validation and the torch backend both run.

    Args:
        network: the U-Net, in eval mode.
        tiles: float32 ``(N, 4, *patch)``.
        output_mode: how logits become probabilities.
        device: where ``network`` lives.
        autocast_dtype: autocast to this dtype (bf16 on CPU, fp16 on CUDA), or ``None`` for fp32.
        activated: return probabilities; ``False``: the logits (a contract whose ``outputs`` are logits).

    Returns:
        float32 ``(N, C, *patch)`` on the CPU.
    """
    device = torch.device(device)
    inputs = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32)).to(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast_dtype,
                                                enabled=autocast_dtype is not None):
        return model_outputs(network(inputs).float(), output_mode, activated).cpu().numpy()
