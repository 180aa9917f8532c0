"""Fixtures of the prepare tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def deepbet_cache(tmp_path_factory):
    """deepbet's networks exported to ONNX once per session into a temporary cache (needs torch and deepbet)."""
    pytest.importorskip("torch")
    pytest.importorskip("deepbet")
    pytest.importorskip("onnxruntime")
    from bratsx.prepare.skullstrip import onnx_from_deepbet

    cache = tmp_path_factory.mktemp("skullstrip")
    onnx_from_deepbet(cache)
    return cache
