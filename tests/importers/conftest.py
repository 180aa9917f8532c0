"""Fixtures of the import tests: synthetic cases and imported model folders of the nnU-Net fixtures (the fixture
results folders themselves, ``nnunet_root``, are in tests/conftest.py)."""

from pathlib import Path

import pytest
from nnunet_fixtures import results_folder

from bratsx.synth import write_synthetic_dataset


@pytest.fixture(scope="module")
def cases_dir(tmp_path_factory) -> Path:
    """Two synthetic 1 mm cases, stored L,P,S as BraTS (what nnU-Net's reader and bratsx both read as (z, y, x))."""
    root = tmp_path_factory.mktemp("cases")
    write_synthetic_dataset(root, cases=2, shape=(56, 52, 40), seed=11)
    return root


@pytest.fixture(scope="module")
def imported(nnunet_root, tmp_path_factory):
    """Imported model folders by (dataset, folds), each written once."""
    from bratsx.importers.nnunet import import_nnunet
    from bratsx.importers.options import NnunetImport

    made = {}

    def folder(dataset, folds):
        if (dataset, folds) not in made:
            out = tmp_path_factory.mktemp("models") / f"{dataset.name}-{folds}"
            import_nnunet(results_folder(nnunet_root, dataset), out, NnunetImport(folds=folds))
            made[dataset, folds] = out
        return made[dataset, folds]

    return folder
