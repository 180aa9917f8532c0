"""Fixtures for trainer tests: a tiny synthetic labelled dataset and its cache."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from bratsx.cases import discover_cases
from bratsx.synth import write_synthetic_dataset
from bratsx.trainer.cache import build_cache

TINY_SHAPE = (40, 40, 32)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Four small synthetic BraTS 2018-2021 cases."""
    root = tmp_path_factory.mktemp("tiny_data")
    write_synthetic_dataset(root, cases=4, shape=TINY_SHAPE, seed=11)
    return root


@pytest.fixture(scope="session")
def tiny_cache(tiny_data, tmp_path_factory):
    """The four cases, preprocessed into a cache."""
    return build_cache(discover_cases(tiny_data), tmp_path_factory.mktemp("tiny_cache"))
