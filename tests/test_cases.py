import pytest
from casefiles import write_folder_case, write_msd_case

from bratsx.cases import Layout, discover_cases
from bratsx.errors import BratsxError
from bratsx.labels import LabelConvention, Modality


@pytest.mark.parametrize(
    "layout,case_id,expected_files",
    [
        (Layout.BRATS2020, "BraTS20_Training_001", {Modality.FLAIR: "BraTS20_Training_001_flair.nii.gz",
                                                    Modality.T1: "BraTS20_Training_001_t1.nii.gz",
                                                    Modality.T1CE: "BraTS20_Training_001_t1ce.nii.gz",
                                                    Modality.T2: "BraTS20_Training_001_t2.nii.gz"}),
        (Layout.BRATS2023, "BraTS-GLI-00001-000", {Modality.FLAIR: "BraTS-GLI-00001-000-t2f.nii.gz",
                                                   Modality.T1: "BraTS-GLI-00001-000-t1n.nii.gz",
                                                   Modality.T1CE: "BraTS-GLI-00001-000-t1c.nii.gz",
                                                   Modality.T2: "BraTS-GLI-00001-000-t2w.nii.gz"}),
        (Layout.PLAIN, "patient7", {Modality.FLAIR: "flair.nii.gz", Modality.T1: "t1.nii.gz",
                                    Modality.T1CE: "t1c.nii.gz", Modality.T2: "t2.nii.gz"}),
    ],
)
def test_folder_layouts_are_detected_with_their_modality_files(tmp_path, layout, case_id, expected_files):
    write_folder_case(tmp_path, layout, case_id)
    [case] = discover_cases(tmp_path)
    assert case.case_id == case_id
    assert case.layout is layout
    assert {m: p.name for m, p in case.images.items()} == expected_files
    assert case.label is not None and "seg" in case.label.name
    assert case.problems == ()


def test_msd_dataset_is_recognised_by_its_images_folder(tmp_path):
    dataset = write_msd_case(tmp_path / "Task01_BrainTumour", "BRATS_001")
    (dataset / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"macOS resource fork")  # ships in the MSD tarball
    (dataset / "imagesTs").mkdir()
    (dataset / "imagesTs" / "BRATS_485.nii.gz").write_bytes(b"")
    cases = discover_cases(dataset)
    assert [(c.case_id, c.layout) for c in cases] == [("BRATS_001", Layout.MSD), ("BRATS_485", Layout.MSD)]
    assert cases[0].label.name == "BRATS_001.nii.gz" and cases[0].label.parent.name == "labelsTr"
    assert cases[1].label is None
    assert set(cases[0].images.values()) == {dataset / "imagesTr" / "BRATS_001.nii.gz"}
    assert cases[0].convention is LabelConvention.MSD


def test_one_directory_may_mix_layouts(tmp_path):
    write_folder_case(tmp_path, Layout.BRATS2020, "BraTS20_Training_002")
    write_folder_case(tmp_path, Layout.BRATS2023, "BraTS-GLI-00010-000", label_values=None)
    write_folder_case(tmp_path, Layout.PLAIN, "case_1")
    write_msd_case(tmp_path / "Task01_BrainTumour", "BRATS_003")
    (tmp_path / "notes").mkdir()  # a folder without images is ignored
    found = {c.case_id: c.layout for c in discover_cases(tmp_path)}
    assert found == {
        "BraTS20_Training_002": Layout.BRATS2020,
        "BraTS-GLI-00010-000": Layout.BRATS2023,
        "case_1": Layout.PLAIN,
        "BRATS_003": Layout.MSD,
    }


def test_a_single_case_folder_can_be_given_directly(brats2020_case):
    [case] = discover_cases(brats2020_case)
    assert case.case_id == brats2020_case.name


def test_cases_come_in_natural_order(tmp_path):
    for number in (10, 2, 1):
        write_folder_case(tmp_path, Layout.PLAIN, f"case_{number}", label_values=None)
    assert [c.case_id for c in discover_cases(tmp_path)] == ["case_1", "case_2", "case_10"]


def test_forced_layout_overrides_detection(tmp_path):
    write_folder_case(tmp_path, Layout.BRATS2023, "BraTS-GLI-00001-000")
    [case] = discover_cases(tmp_path, layout="brats2020")
    assert case.layout is Layout.BRATS2020
    assert {p.case_id for p in case.problems} == {"BraTS-GLI-00001-000"}
    assert "missing FLAIR image (expected *_flair.nii.gz)" in str(case.problems[0])


def test_missing_modality_is_recorded_on_the_case(brats2020_case):
    (brats2020_case / f"{brats2020_case.name}_t1ce.nii.gz").unlink()
    [case] = discover_cases(brats2020_case.parent)
    [problem] = case.problems
    assert problem.case_id == brats2020_case.name
    assert "missing T1CE image" in str(problem)


def test_two_files_for_one_modality_are_recorded(brats2020_case):
    extra = brats2020_case / f"{brats2020_case.name}_flair.nii"
    extra.write_bytes(b"")
    [case] = discover_cases(brats2020_case.parent)
    [problem] = case.problems
    assert "two files for FLAIR" in str(problem)
    assert extra.name in str(problem)


def test_no_case_at_all_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BratsxError, match="no BraTS case found"):
        discover_cases(tmp_path)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(BratsxError, match="not a directory"):
        discover_cases(tmp_path / "nope")
