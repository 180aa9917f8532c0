"""The runtime's model-grid stage reproduces nnU-Net's DefaultPreprocessor and its segmentation from probabilities."""

from pathlib import Path

import numpy as np
import pytest
from nnunet_plans import dataset, plans

from bratsx.importers.nnunet_folder import NnunetResults, contract_from_results
from bratsx.runtime.model_grid import (
    logits_on_case_grid,
    model_channels,
    model_labels_from_regions,
    prepare_on_model_grid,
    raw_segmentation,
    regions_from_model_output,
)

preprocessing = pytest.importorskip("nnunetv2.preprocessing.preprocessors.default_preprocessor")
plans_handler = pytest.importorskip("nnunetv2.utilities.plans_handling.plans_handler")

SCHEMES = {
    "zscore in the mask": (("ZScoreNormalization",) * 4, (True,) * 4),
    "zscore everywhere": (("ZScoreNormalization",) * 4, (False,) * 4),
    "CT, none, rescale": (("CTNormalization", "NoNormalization", "RescaleTo01Normalization", "ZScoreNormalization"),
                          (False, False, False, True)),
}
GRIDS = {
    "same spacing": ((1.0, 1.0, 1.0), (0, 1, 2)),
    "coarser, transposed": ((1.2, 1.5, 1.0), (2, 0, 1)),
    "thick slices (separate axis)": ((4.0, 1.0, 1.0), (0, 1, 2)),
}


def _image(rng: np.random.Generator) -> np.ndarray:
    """A (4, z, y, x) float32 'brain': positive intensities inside an ellipsoid with a hole, zero around it."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in (22, 26, 20)), indexing="ij")
    inside = (z / 0.8) ** 2 + (y / 0.9) ** 2 + (x / 0.7) ** 2 < 1
    inside &= ~((np.abs(z) < 0.1) & (np.abs(y) < 0.1) & (np.abs(x) < 0.1))  # a hole nnU-Net fills
    image = rng.uniform(50, 1200, (4, *inside.shape)).astype(np.float32)
    image[:, ~inside] = 0
    return image


def _contract(plans_dict, dataset_dict):
    configuration = plans_dict["configurations"]["3d_fullres"]
    return contract_from_results(NnunetResults(Path("results"), plans_dict, dataset_dict, "3d_fullres",
                                               configuration, {}))


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_prepare_matches_nnunet_default_preprocessor(scheme, grid):
    schemes, use_mask = SCHEMES[scheme]
    spacing, transpose = GRIDS[grid]
    plans_dict, dataset_dict = plans(spacing=spacing, transpose=transpose, schemes=schemes, use_mask=use_mask), \
        dataset()
    contract = _contract(plans_dict, dataset_dict)
    image = _image(np.random.default_rng(3))  # loaded order FLAIR, T1, T1ce, T2
    case_spacing = (1.0, 1.0, 1.0)
    manager = plans_handler.PlansManager(plans_dict)
    model_order = [image[("flair", "t1", "t1ce", "t2").index(m)] for m in contract.modality_order]
    expected, _, _ = preprocessing.DefaultPreprocessor(verbose=False).run_case_npy(
        np.stack(model_order), None, {"spacing": list(case_spacing)}, manager, manager.get_configuration("3d_fullres"),
        dataset_dict)
    before = image.copy()
    ready = prepare_on_model_grid(image, case_spacing, contract)
    np.testing.assert_array_equal(image, before)  # the input is not modified
    assert ready.image.shape == expected.shape
    np.testing.assert_allclose(ready.image, expected, rtol=0, atol=1e-5)


def test_logits_go_back_to_the_canonical_crop_box():
    contract = _contract(plans(spacing=(1.2, 1.5, 1.0), transpose=(2, 0, 1)), dataset())
    image = _image(np.random.default_rng(4))
    ready = prepare_on_model_grid(image, (1.0, 1.0, 1.0), contract)
    logits = np.random.default_rng(5).standard_normal((3, *ready.image.shape[1:])).astype(np.float32)
    back = logits_on_case_grid(logits, ready, (1.0, 1.0, 1.0), contract)
    assert back.shape == (3, *ready.box.shape)


@pytest.mark.parametrize("regions", [True, False])
def test_raw_segmentation_matches_nnunet_label_manager(regions):
    dataset_dict = dataset(regions=regions)
    contract = _contract(plans(), dataset_dict)
    manager = plans_handler.PlansManager(plans()).get_label_manager(dataset_dict)
    rng = np.random.default_rng(6)
    probabilities = rng.uniform(0, 1, (3 if regions else 4, 9, 8, 7)).astype(np.float32)
    if not regions:
        probabilities /= probabilities.sum(axis=0, keepdims=True)
    np.testing.assert_array_equal(raw_segmentation(probabilities, contract),
                                  manager.convert_probabilities_to_segmentation(probabilities))


def _monai_contract(orientation: str = "RAS"):
    from bratsx.contract import ModelContract

    return ModelContract((16, 16, 16), "regions", {"framework": "monai", "divisor": 8},
                         modality_order=("t1ce", "t1", "t2", "flair"), crop_margin=0,
                         canonical_orientation=orientation, crop_to_nonzero=False,
                         channel_normalization=({"scheme": "NormalizeIntensity", "nonzero": True},) * 4)


def test_a_monai_contract_reorients_keeps_the_whole_volume_and_normalises_as_monai():
    transforms = pytest.importorskip("monai.transforms")
    from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform

    from bratsx.geometry import CANONICAL_ORIENTATION

    image = _image(np.random.default_rng(6))
    image[2, 9:12] = 0  # one channel zero where the others are not: per-channel non-zero masks differ from the union
    ready = prepare_on_model_grid(image, (1.0, 1.0, 1.0), _monai_contract())
    ornt = ornt_transform(axcodes2ornt(tuple(CANONICAL_ORIENTATION)), axcodes2ornt(("R", "A", "S")))
    channels = image[[2, 1, 3, 0]]  # loaded FLAIR, T1, T1ce, T2 -> the bundle's T1c, T1, T2, FLAIR
    expected = np.stack([apply_orientation(c, ornt) for c in channels]).astype(np.float32)
    expected = transforms.NormalizeIntensity(nonzero=True, channel_wise=True)(expected).numpy()
    assert ready.box.shape == image.shape[1:] and ready.mask.all()  # no crop, every tile runs
    np.testing.assert_allclose(ready.image, expected, rtol=0, atol=1e-5)


def test_a_monai_contracts_logits_come_back_in_canonical_orientation():
    image = _image(np.random.default_rng(7))
    ready = prepare_on_model_grid(image, (1.0, 1.0, 1.0), _monai_contract("LAS"))
    back = logits_on_case_grid(ready.image.copy(), ready, (1.0, 1.0, 1.0), _monai_contract("LAS"))
    np.testing.assert_array_equal(back.shape, (4, *image.shape[1:]))
    # the identity network: each channel comes back where it was, each normalised inside its own non-zero voxels
    np.testing.assert_array_equal(back[3] != 0, image[0] != 0)


@pytest.mark.parametrize("regions", [True, False])
def test_model_labels_from_regions_write_nnunets_own_segmentation_back(regions):
    contract = _contract(plans(), dataset(regions=regions))
    rng = np.random.default_rng(7)
    probabilities = rng.uniform(0, 1, (3 if regions else 4, 9, 8, 7)).astype(np.float32)
    if not regions:
        probabilities /= probabilities.sum(axis=0, keepdims=True)
    written = model_labels_from_regions(regions_from_model_output(probabilities, contract), contract)
    assert written.dtype == np.uint8
    np.testing.assert_array_equal(written, raw_segmentation(probabilities, contract))


def test_model_labels_are_refused_for_a_model_without_its_own_label_set(tmp_path):
    from typer.testing import CliRunner

    from bratsx.cli.app import app
    from bratsx.synth import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "cases", cases=1, shape=(24, 24, 20), seed=2)
    result = CliRunner().invoke(app, ["infer", str(tmp_path / "cases"), "--labels", "model", "--backend", "ort",
                                      "--out", str(tmp_path / "out")])  # the bundled model: bratsx's own
    assert result.exit_code == 2
    assert "--labels model: this model has no labels of its own" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.nii.gz"))


def test_model_channels_are_picked_by_name_in_the_models_order():
    contract = _contract(plans(schemes=("ZScoreNormalization",) * 2, use_mask=(True,) * 2),
                         dataset(channel_names=("ADC", "T1ce")))
    image = np.arange(3 * 2 * 2 * 2, dtype=np.float32).reshape(3, 2, 2, 2)
    picked = model_channels(image, contract, ("t1ce", "flair", "adc"))
    assert np.array_equal(picked, image[[2, 0]])
    with pytest.raises(ValueError, match="not the model's adc"):
        model_channels(image[:2], contract, ("t1ce", "flair"))


def test_a_case_found_without_the_models_channel_is_refused_before_loading(tmp_path):
    from dataclasses import replace

    from bratsx.cases import discover_cases
    from bratsx.errors import CaseError
    from bratsx.runtime.segment import prepare_case
    from bratsx.synth import write_synthetic_dataset

    write_synthetic_dataset(tmp_path, cases=1, shape=(20, 20, 16))
    [case] = discover_cases(tmp_path)  # the four BraTS files, found for no particular model
    contract = replace(_contract(plans(), dataset()), modality_order=("t1ce", "adc"))
    with pytest.raises(CaseError, match="the model takes ADC, and the case has no ADC image"):
        prepare_case(replace(case, images={**case.images, "flair": tmp_path / "gone.nii.gz"}), contract)
