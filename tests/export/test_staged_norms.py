"""Normalisations exported as staged reductions compute what PyTorch's layers compute."""

import pytest

torch = pytest.importorskip("torch")

from torch import nn

from bratsx.export.onnx_export import StagedGroupNorm, StagedInstanceNorm3d


@pytest.mark.parametrize("affine", [True, False])
def test_staged_group_norm_is_group_norm(affine):
    torch.manual_seed(0)
    norm = nn.GroupNorm(4, 8, affine=affine)
    if affine:
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
    image = torch.randn(2, 8, 6, 7, 5) * 3 + 1
    torch.testing.assert_close(StagedGroupNorm(norm)(image), norm(image), rtol=1e-5, atol=1e-5)


def test_staged_instance_norm_is_instance_norm():
    torch.manual_seed(0)
    norm = nn.InstanceNorm3d(3, affine=True)
    nn.init.normal_(norm.weight)
    image = torch.randn(2, 3, 6, 7, 5) * 3 + 1
    torch.testing.assert_close(StagedInstanceNorm3d(norm)(image), norm(image), rtol=1e-5, atol=1e-5)
