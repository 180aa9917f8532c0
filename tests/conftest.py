"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from casefiles import write_folder_case

from bratsx.cases import Layout


@pytest.fixture
def brats2020_case(tmp_path: Path) -> Path:
    """A valid BraTS 2018-2021 case folder inside ``tmp_path``."""
    return write_folder_case(tmp_path, Layout.BRATS2020, "BraTS20_Training_001")
