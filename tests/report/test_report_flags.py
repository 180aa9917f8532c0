"""Each QC flag on records built by hand."""

import pytest

from bratsx.report.flags import Evidence, FlagKind, FlagOptions, compute_flags, flag_explanations


def volumes(wt: float, tc: float | None = None, et: float | None = None) -> dict[str, float]:
    tc = wt / 2 if tc is None else tc
    return {"WT": wt, "TC": tc, "ET": tc / 2 if et is None else et}


def kinds(evidence, options=FlagOptions()) -> dict[str, set[FlagKind]]:
    return {case_id: {f.kind for f in flags} for case_id, flags in compute_flags(evidence, options).items()}


def test_a_failed_case_is_flagged_failed_and_nothing_else():
    flagged = kinds([Evidence("a", failed=True, volumes_ml=volumes(0.0), touches_border=True, dice={"WT": 0.0})])
    assert flagged == {"a": {FlagKind.FAILED}}


def test_no_predicted_tumour():
    flagged = kinds([Evidence("empty", volumes_ml=volumes(0.0)), Evidence("some", volumes_ml=volumes(10.0))])
    assert flagged == {"empty": {FlagKind.NO_TUMOUR}, "some": set()}


def test_et_absent_while_tc_present():
    flagged = kinds([Evidence("no-et", volumes_ml=volumes(20.0, 5.0, 0.0)),
                     Evidence("no-core", volumes_ml=volumes(20.0, 0.0, 0.0)),
                     Evidence("both", volumes_ml=volumes(20.0, 5.0, 1.0))])
    assert flagged == {"no-et": {FlagKind.ET_ABSENT}, "no-core": set(), "both": set()}


def test_tumour_touching_the_border():
    flagged = kinds([Evidence("edge", volumes_ml=volumes(5.0), touches_border=True),
                     Evidence("inside", volumes_ml=volumes(5.0), touches_border=False),
                     Evidence("unknown", volumes_ml=volumes(5.0))])
    assert flagged == {"edge": {FlagKind.BORDER}, "inside": set(), "unknown": set()}


def test_volume_outlier_by_robust_z_score():
    # median 14, MAD 2: 60 mL has z = 0.6745 * 46 / 2 = 15.5, 19 mL has z = 1.69, 10 mL has z = -1.35
    sizes = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 19.0, 60.0]
    evidence = [Evidence(f"c{i}", volumes_ml=volumes(v)) for i, v in enumerate(sizes)]
    flags = compute_flags(evidence)
    outliers = {case_id for case_id, raised in flags.items() if any(f.kind is FlagKind.VOLUME_OUTLIER for f in raised)}
    assert outliers == {"c8"}
    (flag,) = flags["c8"]
    assert flag.detail == "WT 60.0 mL, robust z +15.5"
    lower = kinds(evidence, FlagOptions(outlier_z=1.5))
    assert lower["c7"] == {FlagKind.VOLUME_OUTLIER} and lower["c0"] == set()


@pytest.mark.parametrize("sizes", [[10.0, 10.0, 10.0, 10.0, 10.0, 90.0], [10.0, 11.0, 500.0]])
def test_no_volume_outlier_without_spread_or_with_too_few_cases(sizes):
    flagged = kinds([Evidence(f"c{i}", volumes_ml=volumes(v)) for i, v in enumerate(sizes)])
    assert all(FlagKind.VOLUME_OUTLIER not in raised for raised in flagged.values())


def test_dice_below_the_threshold_names_the_regions():
    evidence = [Evidence("poor", volumes_ml=volumes(10.0), dice={"WT": 0.9, "TC": 0.3, "ET": 0.1}),
                Evidence("good", volumes_ml=volumes(10.0), dice={"WT": 0.9, "TC": 0.8, "ET": 0.7}),
                Evidence("no-reference", volumes_ml=volumes(10.0))]
    flags = compute_flags(evidence, FlagOptions(dice_below=0.5))
    assert [f.kind for f in flags["poor"]] == [FlagKind.LOW_DICE]
    assert flags["poor"][0].detail == "Dice TC 0.30, ET 0.10"
    assert flags["good"] == [] and flags["no-reference"] == []
    assert kinds(evidence, FlagOptions(dice_below=0.75))["good"] == {FlagKind.LOW_DICE}


def test_every_flag_is_explained_with_its_threshold():
    explanations = flag_explanations(FlagOptions(dice_below=0.42, outlier_z=2.5))
    assert set(explanations) == set(FlagKind)
    assert "0.42" in explanations[FlagKind.LOW_DICE] and "2.5" in explanations[FlagKind.VOLUME_OUTLIER]
