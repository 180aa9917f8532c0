"""Label sets as data: the table, detection among a case's candidates, and scoring per set on hand-made maps."""

import json

import numpy as np
import pytest
from casefiles import save
from typer.testing import CliRunner

from bratsx.cases import Case, Layout
from bratsx.cli import app
from bratsx.contract import ModelContract
from bratsx.datasetjson import label_set_from_dataset_json
from bratsx.errors import BratsxError, CaseError
from bratsx.labels import (
    LABEL_SETS,
    REGION_ORDER,
    LabelConvention,
    LabelSetError,
    candidate_sets,
    detect_convention,
    evaluated_region_masks,
    regions_from_labels,
)
from bratsx.runtime.evaluate import evaluate_directories
from bratsx.scoring import score_label_maps

ISO = (1.0, 1.0, 1.0)


@pytest.mark.parametrize("name", list(LabelConvention))
def test_every_set_defines_wt_tc_et_first_from_its_own_values_and_cites_a_source(name):
    row = LABEL_SETS[name]
    assert [r.name for r in row.regions[:3]] == [r.value for r in REGION_ORDER]
    values = {t.value for t in row.tissues}
    assert all(set(r.values) <= values for r in row.regions)
    assert {v for _, v in row.model_values} <= values
    assert row.source and row.title
    assert all(r.lesion.dilation_iterations >= 1 and r.lesion.volume_threshold_mm3 > 0 for r in row.regions)


# (set, value) -> (WT, TC, ET) membership, written out by hand from the challenges' evaluation code
HAND_REGIONS = [
    (LabelConvention.BRATS2024, 4, (False, False, False)),  # resection cavity: in no tumour region
    (LabelConvention.BRATS2024, 1, (True, True, False)),
    (LabelConvention.MET, 4, (False, False, False)),
    (LabelConvention.PED2024, 1, (True, True, True)),  # pediatric 2024: 1 is ET
    (LabelConvention.PED2024, 3, (True, True, False)),  # cystic component: in TC
    (LabelConvention.PED2024, 4, (True, False, False)),  # edema
    (LabelConvention.MSD, 1, (True, False, False)),  # MSD: 1 is edema
]


@pytest.mark.parametrize("name,value,expected", HAND_REGIONS)
def test_each_value_falls_in_the_regions_its_challenge_defines(name, value, expected):
    assert tuple(regions_from_labels(np.array([value], np.uint8), name)[:, 0]) == expected


def test_the_2024_post_treatment_set_scores_rc_netc_and_snfh_as_their_own_regions():
    labels = np.array([0, 1, 2, 3, 4], np.uint8)
    masks = evaluated_region_masks(labels, LabelConvention.BRATS2024)
    names = [r.name for r in LABEL_SETS[LabelConvention.BRATS2024].regions]
    assert names == ["WT", "TC", "ET", "NETC", "SNFH", "RC"]
    assert masks.astype(int).tolist() == [[0, 1, 1, 1, 0], [0, 1, 0, 1, 0], [0, 0, 0, 1, 0],
                                          [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]]
    assert not LABEL_SETS[LabelConvention.BRATS2024].region("RC").tumour


@pytest.mark.parametrize("case_id,expected", [
    ("Brats18_2013_2_1", (LabelConvention.BRATS2020,)),
    ("BraTS2021_00000", (LabelConvention.BRATS2020,)),
    ("BraTS-GLI-02073-100", (LabelConvention.BRATS2023, LabelConvention.BRATS2024)),
    ("BraTS-MEN-00004-000", (LabelConvention.MEN,)),
    ("BraTS-MET-00001-000", (LabelConvention.MET,)),
    ("BraTS-PED-00030-000", (LabelConvention.PED2023, LabelConvention.PED2024)),
    ("BRATS_001", (LabelConvention.MSD,)),
    ("patient7", (LabelConvention.BRATS2023, LabelConvention.BRATS2024, LabelConvention.BRATS2020)),
])
def test_a_cases_id_names_the_sets_it_could_belong_to(case_id, expected):
    assert candidate_sets(case_id) == expected


@pytest.mark.parametrize("values", [[0, 1, 2, 4], [0, 1, 2], [0, 4], [0, 1, 2, 3, 4]])
def test_a_pediatric_map_is_never_read_as_brats_2018(values):
    candidates = candidate_sets("BraTS-PED-00030-000")
    try:
        found = detect_convention(np.array(values, np.uint8), candidates)
    except LabelSetError as error:  # 1-3 mean different tissues in 2023 and 2024: refused, naming both
        assert "brats-ped2023|brats-ped2024" in str(error)
    else:
        assert found is LabelConvention.PED2024


def test_a_pediatric_map_with_2024_values_reads_1_as_enhancing_tumour():
    labels = np.array([1, 2, 4], np.uint8)
    found = detect_convention(labels, candidate_sets("BraTS-PED-00030-000"))
    assert found is LabelConvention.PED2024
    assert regions_from_labels(labels, found)[2].tolist() == [True, False, False]  # ET is the 1


def _post_treatment_pair():
    """A BraTS 2024 reference with a resection cavity (4) and no enhancing tumour, and a prediction of it."""
    reference = np.zeros((24, 24, 24), np.uint8)
    reference[2:8, 2:8, 2:8] = 2  # SNFH, 216 voxels
    reference[4:6, 4:6, 4:6] = 1  # NETC, 8 voxels inside it
    reference[14:20, 14:20, 14:20] = 4  # RC, 216 voxels
    prediction = reference.copy()
    prediction[14:20, 14:20, 14:17] = 0  # half the cavity found
    return prediction, reference


def test_a_2024_map_with_rc_and_no_et_is_refused_without_labels_and_scored_right_with_it(tmp_path):
    prediction, reference = _post_treatment_pair()
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    save(prediction, tmp_path / "pred" / "case_1.nii.gz")
    save(reference, tmp_path / "ref" / "case_1.nii.gz")
    refused = CliRunner().invoke(app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "ref")])
    said = " ".join(refused.output.split())  # the terminal may wrap the line
    assert refused.exit_code == 1
    assert "case case_1, file case_1.nii.gz: label values [0, 1, 2, 4] are ambiguous" in said
    assert "choose the set with --labels brats2020|brats2024" in said
    assert "Traceback" not in refused.output

    [record] = evaluate_directories(tmp_path / "pred", tmp_path / "ref", LabelConvention.BRATS2024)
    metrics = record.metrics
    assert record.status == "ok" and record.label_set == "brats2024"
    assert metrics["dice_RC"] == pytest.approx(2 * 108 / (108 + 216))  # the cavity, scored apart
    assert metrics["dice_WT"] == metrics["dice_SNFH"] == metrics["dice_NETC"] == 1.0  # no cavity in the tumour
    assert metrics["volume_ref_ml_WT"] == pytest.approx(216 / 1000)  # 2018's reading would add 216 ET voxels
    assert metrics["dice_ET"] == 1.0 and metrics["volume_ref_ml_ET"] == 0.0  # no ET in either

    runner = CliRunner().invoke(app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "ref"), "--labels",
                                      "brats2024"])
    assert runner.exit_code == 0 and "RC mean" in runner.output


def test_lesion_wise_numbers_follow_each_sets_parameters():
    reference = np.zeros((40, 40, 40), np.uint8)
    reference[5:8, 5:8, 5:8] = 3  # a 27 mm3 lesion: counted by metastases (> 2 mm3), not by 2023 glioma (<= 50)
    reference[20:24, 20:24, 20:24] = 3  # two 64 mm3 lesions 8 voxels apart: merged by dilation 5, not by 3
    reference[20:24, 20:24, 32:36] = 3
    prediction = np.zeros_like(reference)
    prediction[20:24, 20:24, 20:24] = 3

    def counts(name):
        m = score_label_maps(prediction, name, reference, name, ISO, lesion_wise=True)
        return m["lesions_tp_ET"], m["lesions_fn_ET"], m["lesions_fp_ET"]

    assert counts(LabelConvention.BRATS2023) == (1, 1, 0)  # the small lesion not counted; two lesions apart
    assert counts(LabelConvention.MET) == (1, 2, 0)  # every lesion counted (dilation 1, threshold 2 mm3)
    ped_reference, ped_prediction = np.where(reference == 3, 1, 0), np.where(prediction == 3, 1, 0)
    m = score_label_maps(ped_prediction.astype(np.uint8), LabelConvention.PED2024, ped_reference.astype(np.uint8),
                         LabelConvention.PED2024, ISO, lesion_wise=True)
    # dilation 5 merges the two far lesions into one, found in part; the 27 mm3 one counts (threshold 10)
    assert (m["lesions_tp_ET"], m["lesions_fn_ET"], m["lesions_fp_ET"]) == (1, 1, 0)
    assert m["lesion_dice_ET"] == pytest.approx((2 * 64 / (64 + 128)) / 2)


def test_different_sets_compare_only_the_regions_they_share():
    prediction = np.array([[[0, 1, 2, 3]]], np.uint8)  # 2023 values
    reference = np.array([[[0, 1, 2, 4]]], np.uint8)  # 2018 values
    metrics = score_label_maps(prediction, LabelConvention.BRATS2023, reference, LabelConvention.BRATS2020, ISO,
                               lesion_wise=False)
    assert {k for k in metrics if k.startswith("dice_")} == {"dice_WT", "dice_TC", "dice_ET"}
    assert metrics["dice_WT"] == metrics["dice_TC"] == metrics["dice_ET"] == 1.0


@pytest.mark.parametrize("labels,expected", [
    ({"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}, LabelConvention.MSD),
    ({"background": 0, "NETC": 1, "SNFH": 2, "ET": 3, "RC": 4}, LabelConvention.BRATS2024),
    ({"background": 0, "NCR": 1, "ED": 2, "ET": 4}, LabelConvention.BRATS2020),
    ({"background": 0, "ET": 1, "NET": 2, "CC": 3, "ED": 4}, LabelConvention.PED2024),
    ({"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}, None),
])
def test_dataset_json_states_its_label_set(tmp_path, labels, expected):
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "x", "labels": labels}))
    assert label_set_from_dataset_json(tmp_path) is expected


@pytest.mark.parametrize("text,problem", [
    ('{"labels": {"0": "background", "1": "liver"}}', "no tissue bratsx knows"),
    ('{"labels": {"0": "background", "1": "edema", "2": "edema"}}', "match no label set"),
    ("{not json", "cannot read the dataset file"),
])
def test_a_dataset_json_that_states_nothing_usable_is_refused_in_one_line(tmp_path, text, problem):
    (tmp_path / "dataset.json").write_text(text)
    with pytest.raises(BratsxError, match=problem) as caught:
        label_set_from_dataset_json(tmp_path)
    assert "\n" not in str(caught.value)


def test_an_msd_dataset_json_that_states_2023_values_overrides_msds_own(tmp_path):
    from casefiles import write_msd_case

    from bratsx.cases import discover_cases
    write_msd_case(tmp_path, "BRATS_001")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "NETC", "2": "SNFH",
                                                                  "3": "ET"}}))
    [case] = discover_cases(tmp_path)
    assert case.label_sets == (LabelConvention.BRATS2023,)


def test_the_contract_records_its_label_set_and_old_contracts_still_load():
    contract = ModelContract((32, 32, 32), "regions", {}, label_set="brats2024")
    assert contract.label_set is LabelConvention.BRATS2024
    assert ModelContract.from_dict(contract.to_dict()) == contract
    old = contract.to_dict()
    del old["label_set"]
    assert ModelContract.from_dict(old).label_set is None


@pytest.mark.parametrize(("gaussian", "blend"), [(True, "gaussian"), (False, "constant")])
def test_a_contract_written_before_blend_reads_its_gaussian_flag(gaussian, blend):
    old = ModelContract((32, 32, 32), "regions", {}).to_dict()
    del old["blend"]
    assert ModelContract.from_dict({**old, "gaussian": gaussian}).blend == blend


def test_an_unlabelled_pediatric_case_needs_its_label_set_unless_the_model_states_one(tmp_path):
    case = Case("BraTS-PED-00030-000", Layout.BRATS2023, tmp_path, {})
    with pytest.raises(CaseError, match="brats-ped2023, brats-ped2024.*--labels"):
        case.output_convention()
    assert case.output_convention(LabelConvention.PED2024) is LabelConvention.PED2024
    assert Case("BraTS-GLI-00001-000", Layout.BRATS2023, tmp_path, {}).output_convention() is LabelConvention.BRATS2023
    # a plain case: BraTS 2023's values, which read back unambiguously (2018's ET 4 would not)
    plain = Case("case_1", Layout.PLAIN, tmp_path, {})
    assert plain.output_convention() is plain.output_convention(LabelConvention.BRATS2020) is LabelConvention.BRATS2023
    assert plain.output_convention(LabelConvention.PED2024) is LabelConvention.PED2024  # a set the values cannot say


def test_tables_show_wt_tc_et_then_each_sets_own_regions():
    from bratsx.metrics import scored_regions

    assert scored_regions([None, {"dice_WT": 1.0}]) == ["WT", "TC", "ET"]
    assert scored_regions([{"dice_WT": 1.0, "dice_RC": 0.5}, {"dice_NETC": 1.0}]) == ["WT", "TC", "ET", "RC", "NETC"]


def _segment(cases_dir, out):
    from standins import CONTRACT, SlowThreshold

    from bratsx.cases import discover_cases
    from bratsx.runtime.batch import run_batch
    from bratsx.runtime.runner import Runner

    runner = Runner.from_backends([SlowThreshold()], CONTRACT)
    return {r.case_id: r for r in run_batch(discover_cases(cases_dir), runner, out).records}


def test_an_ambiguous_reference_costs_only_its_own_metrics_and_the_batch_finishes(tmp_path):
    from casefiles import write_folder_case

    write_folder_case(tmp_path / "cases", Layout.PLAIN, "case_a", label_values=(1, 2, 4))
    write_folder_case(tmp_path / "cases", Layout.BRATS2020, "BraTS20_Training_001")
    records = _segment(tmp_path / "cases", tmp_path / "out")
    assert [r.status for r in records.values()] == ["ok", "ok"]
    assert records["case_a"].metrics is None
    assert records["case_a"].metrics_error.startswith("case case_a, file seg.nii.gz: label values [0, 1, 2, 4] are "
                                                      "ambiguous")
    assert records["BraTS20_Training_001"].metrics is not None
    assert records["BraTS20_Training_001"].label_set == "brats2020"


def test_a_damaged_dataset_json_costs_the_references_not_the_segmentations(tmp_path):
    from casefiles import write_msd_case

    write_msd_case(tmp_path / "msd", "BRATS_001")
    (tmp_path / "msd" / "dataset.json").write_text('{"labels": {"0": "background", "1": "liver"}}')
    [record] = _segment(tmp_path / "msd", tmp_path / "out").values()
    assert record.status == "ok" and record.metrics is None
    assert "dataset.json: label names ['liver'] are no tissue bratsx knows" in record.metrics_error
