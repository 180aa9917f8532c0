"""The model folder shipped inside the package is intact, portable and runs."""

from __future__ import annotations

import json

import pytest

from bratsx.contract import file_sha256
from bratsx.modelfolder import GATED_FILES, MODEL_FILES, MODEL_JSON
from bratsx.workspace import bundled_models

BUNDLED = bundled_models()


@pytest.fixture(params=BUNDLED, ids=[folder.name for folder in BUNDLED])
def bundled(request):
    return request.param


def test_the_package_ships_a_model():
    assert BUNDLED, "no model folder under bratsx/models"


def test_each_file_is_the_one_its_model_json_describes(bundled):
    on_disk = {p.name for p in bundled.path.glob("model.*") if p.name != MODEL_JSON}
    assert set(bundled.info["files"]) == on_disk
    for name, described in bundled.info["files"].items():
        assert file_sha256(bundled.path / name) == described["sha256"], name


def test_its_description_names_the_folder_and_no_path_of_the_machine_it_was_made_on(bundled):
    assert bundled.info["name"] == bundled.name
    text = (bundled.path / MODEL_JSON).read_text()
    assert "/tmp/" not in text and "/root/" not in text and "/home/" not in text
    assert json.loads(text)["source"]["command"]


def test_every_reduced_precision_file_shipped_passed_its_gate(bundled):
    for kind in GATED_FILES:
        if (bundled.path / MODEL_FILES[kind]).is_file():
            gate = bundled.info["gates"][kind]
            assert gate["passed"] and min(gate["dice"].values()) >= gate["threshold"], kind
