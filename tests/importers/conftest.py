"""nnU-Net v2 results folders made by nnU-Net itself (see tests/nnunet_fixtures.py), built once and kept in pytest's
cache between sessions (a new recipe gets a new folder; a session without the cache builds them in a temporary
folder); the tests using them are marked slow."""

from pathlib import Path

import pytest
from nnunet_fixtures import build_fixtures, fixture_fingerprint


@pytest.fixture(scope="session")
def nnunet_root(request, tmp_path_factory) -> Path:
    """The fixture root: nnUNet_raw, nnUNet_preprocessed and nnUNet_results of the fixture datasets."""
    pytest.importorskip("nnunetv2")
    pytest.importorskip("onnxscript")
    name = f"nnunet-fixtures-{fixture_fingerprint()}"
    cache = getattr(request.config, "cache", None)
    return build_fixtures(cache.mkdir(name) if cache is not None else tmp_path_factory.mktemp(name))
