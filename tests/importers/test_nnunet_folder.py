"""Reading an nnU-Net results folder: what is refused (one line, naming the file) and the contract it implies."""

import json

import pytest
from nnunet_plans import dataset, plans, write_results_folder

from bratsx.errors import BratsxError
from bratsx.importers.channels import modalities_for_channels, parse_channel_option
from bratsx.importers.nnunet_folder import contract_from_results, read_results_folder
from bratsx.labels import Modality, OutputMode


def _with_checkpoints(folder, folds=(0,)):
    for fold in folds:
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"")
    return folder


def test_region_results_give_nnunets_preprocessing_and_regions(tmp_path):
    folder = _with_checkpoints(write_results_folder(tmp_path, plans(spacing=(3.0, 1.0, 1.5), transpose=(2, 0, 1)),
                                                    dataset()))
    contract = contract_from_results(read_results_folder(folder))
    assert contract.output_mode is OutputMode.REGIONS
    assert contract.modality_order == ("t1", "t1ce", "t2", "flair")
    assert contract.target_spacing == (3.0, 1.0, 1.5)
    assert contract.spacing == (1.0, 1.5, 3.0)  # canonical axes: network axis 0 is canonical axis 2
    assert contract.transpose_forward == (2, 0, 1)
    assert contract.channel_normalization[0] == {"scheme": "ZScoreNormalization", "use_mask": True}
    assert contract.resampling["data"]["order"] == 3 and contract.resampling["logits"]["order"] == 1
    assert contract.model_labels["regions"] == [[1, 2, 3], [2, 3], [3]]
    assert contract.model_labels["regions_class_order"] == [1, 2, 3]


def test_label_results_map_tissues_by_name(tmp_path):
    folder = _with_checkpoints(write_results_folder(tmp_path, plans(), dataset(regions=False,
                                                    channel_names=("t2f", "t1n", "t1c", "t2w"))))
    contract = contract_from_results(read_results_folder(folder))
    assert contract.output_mode is OutputMode.LABELS
    assert contract.modality_order == ("flair", "t1", "t1ce", "t2")
    assert contract.model_labels["regions"] == [[1, 2, 3], [1, 3], [3]]


def test_channels_that_are_no_brats_modality_keep_their_own_names(tmp_path):
    folder = _with_checkpoints(write_results_folder(tmp_path, plans(), dataset(
        channel_names=("T1", "T1ce", "ADC", "DWI b1000"))))
    assert contract_from_results(read_results_folder(folder)).modality_order == ("t1", "t1ce", "adc", "dwib1000")


def test_all_folds_are_found_and_named_folds_are_kept_in_order(tmp_path):
    folder = _with_checkpoints(write_results_folder(tmp_path, plans(), dataset(), folds=(0, 1, 3)), (0, 1, 3))
    assert list(read_results_folder(folder).checkpoints) == [0, 1, 3]
    assert list(read_results_folder(folder, folds=(3, 0)).checkpoints) == [3, 0]


@pytest.mark.parametrize(("damage", "message"), [
    ("no plans", "not an nnU-Net results folder (no plans.json)"),
    ("bad name", "not an nnU-Net results folder name"),
    ("2d", "is 2D; bratsx imports 3D configurations"),
    ("cascade", "is a cascade stage"),
    ("missing fold", "no fold_4 folder"),
    ("missing checkpoint", "fold_0/checkpoint_final.pth: missing"),
    ("unknown normalisation", "normalisation scheme 'FancyNormalization' is not supported"),
    ("unmappable channel", "channel 2 ('Seg'): 'seg' cannot name an input channel"),
    ("not BraTS labels", "do not name the BraTS tissues"),
])
def test_bad_results_folders_are_refused_in_one_line(tmp_path, damage, message):
    plans_dict, dataset_dict, name, folds = plans(), dataset(), "nnUNetTrainer__nnUNetPlans__3d_fullres", (0,)
    if damage == "2d":
        plans_dict = plans(configuration="2d", patch=(16, 16))
        name = "nnUNetTrainer__nnUNetPlans__2d"
    elif damage == "cascade":
        plans_dict = plans(configuration="3d_cascade_fullres", previous_stage="3d_lowres")
        name = "nnUNetTrainer__nnUNetPlans__3d_cascade_fullres"
    elif damage == "bad name":
        name = "somewhere"
    elif damage == "unknown normalisation":
        plans_dict = plans(schemes=("FancyNormalization",) * 4)
    elif damage == "unmappable channel":
        dataset_dict = dataset(channel_names=("T1", "T1ce", "Seg", "Flair"))
    elif damage == "not BraTS labels":
        dataset_dict = {**dataset(regions=False), "labels": {"background": 0, "liver": 1, "tumour": 2, "cyst": 3}}
    folder = write_results_folder(tmp_path, plans_dict, dataset_dict, folds, name)
    if damage != "missing checkpoint":
        _with_checkpoints(folder)
    if damage == "no plans":
        (folder / "plans.json").unlink()
    with pytest.raises(BratsxError) as refused:
        options = {"folds": (4,)} if damage == "missing fold" else {}
        contract_from_results(read_results_folder(folder, **options))
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_channel_option_overrides_names_and_refuses_typos():
    assert parse_channel_option("0=t1, 3=FLAIR") == {0: Modality.T1, 3: Modality.FLAIR}
    names = {"0": "a", "1": "b", "2": "c", "3": "d"}
    override = parse_channel_option("0=t1,1=t1ce,2=t2,3=flair")
    assert modalities_for_channels(names, override) == ("t1", "t1ce", "t2", "flair")
    assert parse_channel_option("0=T1Gd,1=ADC") == {0: "t1ce", 1: "adc"}  # another image keeps its own name
    for typo in ("x=t1", "0=", "0=seg"):
        with pytest.raises(BratsxError, match="--channels"):
            parse_channel_option(typo)
    with pytest.raises(BratsxError, match="two channels map to one image"):
        modalities_for_channels({"0": "t1", "1": "T1"})
    with pytest.raises(BratsxError, match="names channel 5"):
        modalities_for_channels(names, {5: Modality.T1})


def test_inherited_configuration_is_resolved(tmp_path):
    plans_dict = plans()
    plans_dict["configurations"]["3d_custom"] = {"inherits_from": "3d_fullres", "spacing": [2.0, 2.0, 2.0]}
    folder = _with_checkpoints(write_results_folder(tmp_path, plans_dict, dataset(),
                                                    name="nnUNetTrainer__nnUNetPlans__3d_custom"))
    assert contract_from_results(read_results_folder(folder)).target_spacing == (2.0, 2.0, 2.0)
    assert json.loads((folder / "plans.json").read_text())["configurations"]["3d_custom"]["inherits_from"]
