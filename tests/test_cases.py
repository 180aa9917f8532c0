import logging
import os
from pathlib import Path

import pytest
from casefiles import modality_volume, save, write_folder_case, write_msd_case

from bratsx.cases import Layout, discover, discover_cases
from bratsx.errors import BratsxError, LabelError
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
                                    Modality.T1CE: "t1ce.nii.gz", Modality.T2: "t2.nii.gz"}),
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


# --- what discovery refuses, reports and skips ------------------------------------------------------


def test_the_same_msd_id_in_images_tr_and_ts_is_refused_naming_both_files(tmp_path):
    write_msd_case(tmp_path, "BRATS_001")
    (tmp_path / "imagesTs").mkdir()
    (tmp_path / "imagesTs" / "BRATS_001.nii.gz").write_bytes((tmp_path / "imagesTr" / "BRATS_001.nii.gz").read_bytes())
    with pytest.raises(BratsxError) as caught:
        discover_cases(tmp_path)
    message = str(caught.value)
    assert "case id BRATS_001 found twice" in message and "\n" not in message
    assert str(tmp_path / "imagesTr" / "BRATS_001.nii.gz") in message
    assert str(tmp_path / "imagesTs" / "BRATS_001.nii.gz") in message


def test_ids_equal_but_for_letter_case_are_refused(tmp_path):
    write_folder_case(tmp_path, Layout.PLAIN, "Case_7", label_values=None)
    write_folder_case(tmp_path, Layout.PLAIN, "case_7", label_values=None)
    with pytest.raises(BratsxError, match="differ only in letter case"):
        discover_cases(tmp_path)


def refuse_listing(monkeypatch, denied: Path) -> None:
    """Make listing ``denied`` fail as it does for a folder without read permission."""
    iterdir = Path.iterdir

    def refusing_iterdir(self: Path):
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", refusing_iterdir)


def test_a_folder_that_cannot_be_listed_fails_alone(tmp_path, monkeypatch):
    write_folder_case(tmp_path, Layout.PLAIN, "case_1", label_values=None)
    locked = write_folder_case(tmp_path, Layout.PLAIN, "case_2", label_values=None)
    refuse_listing(monkeypatch, locked)
    cases = discover_cases(tmp_path)
    assert [(c.case_id, len(c.problems)) for c in cases] == [("case_1", 0), ("case_2", 1)]
    assert str(cases[1].problems[0]) == ("case case_2, folder case_2: cannot list the folder (Permission denied); "
                                         "check its permissions")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root lists any folder")
def test_a_folder_without_read_permission_fails_alone(tmp_path):
    write_folder_case(tmp_path, Layout.PLAIN, "case_1", label_values=None)
    locked = write_folder_case(tmp_path, Layout.PLAIN, "case_2", label_values=None)
    locked.chmod(0)
    try:
        cases = discover_cases(tmp_path)
    finally:
        locked.chmod(0o755)
    assert [c.case_id for c in cases if c.problems] == ["case_2"]
    assert "cannot list the folder" in str(cases[1].problems[0])


def test_a_root_that_cannot_be_listed_is_one_clear_error(tmp_path, monkeypatch):
    refuse_listing(monkeypatch, tmp_path)
    with pytest.raises(BratsxError, match="cannot list the folder"):
        discover_cases(tmp_path)


@pytest.mark.parametrize("given,working_dir", [(".", "."), ("./", "."), ("..", "sub")])
def test_a_case_folder_given_as_a_dot_path_is_named_after_the_folder(tmp_path, monkeypatch, given, working_dir):
    folder = write_folder_case(tmp_path, Layout.PLAIN, "patient7", label_values=None)
    (folder / working_dir).mkdir(exist_ok=True)
    monkeypatch.chdir(folder / working_dir)
    [case] = discover_cases(given)
    assert case.case_id == "patient7"


def test_a_hidden_case_folder_given_directly_is_refused_naming_it(tmp_path):
    folder = write_folder_case(tmp_path, Layout.PLAIN, ".patient7", label_values=None)
    with pytest.raises(BratsxError, match=r"\.patient7.*cannot name outputs"):
        discover_cases(folder)


def test_discovery_says_what_it_skipped_and_why(tmp_path, caplog):
    write_folder_case(tmp_path, Layout.PLAIN, "case_1", label_values=None)
    write_folder_case(tmp_path, Layout.PLAIN, ".case_2", label_values=None)
    (tmp_path / "notes").mkdir()
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "a.nii.gz").write_bytes(b"")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    found = discover(tmp_path)
    assert [c.case_id for c in found.cases] == ["case_1"]
    assert {s.path.name: s.reason for s in found.skipped} == {
        ".case_2": "hidden folder (its name starts with '.')",
        "gone": f"is a dangling symbolic link (its target {tmp_path / 'nowhere'} does not exist)",
        "notes": "no NIfTI file",
        "odd": "no file named like a FLAIR, T1, T1ce or T2 image (1 NIfTI file(s))",
    }
    with caplog.at_level(logging.INFO, logger="bratsx.cases"):
        assert [c.case_id for c in discover_cases(tmp_path)] == ["case_1"]
    assert "skipped" in caplog.text and ".case_2" in caplog.text


def test_no_case_found_says_what_was_skipped(tmp_path):
    write_folder_case(tmp_path, Layout.PLAIN, ".case_1", label_values=None)
    with pytest.raises(BratsxError, match=r"no BraTS case found .*; skipped \.case_1: hidden folder"):
        discover_cases(tmp_path)


@pytest.mark.parametrize("kind,expected", [
    ("dangling", "FLAIR file is a dangling symbolic link (its target /nonexistent/flair.nii.gz does not exist)"),
    ("loop", "FLAIR file is a symbolic link loop"),
    ("directory", "FLAIR file is a directory, not a NIfTI file"),
    ("fifo", "FLAIR file is not a regular file (a pipe, socket or device)"),
    ("unexaminable", "FLAIR file cannot be read (Permission denied)"),
])
def test_entries_named_like_images_that_are_no_files_are_named_as_such(tmp_path, monkeypatch, kind, expected):
    folder = write_folder_case(tmp_path, Layout.PLAIN, "case_1", label_values=None)
    flair = folder / "flair.nii.gz"
    if kind == "unexaminable":  # what a folder readable but not searchable (mode r--) gives a user other than root
        stat = Path.stat

        def refusing_stat(self: Path, **kwargs):
            if self == flair:
                raise PermissionError(13, "Permission denied", str(self))
            return stat(self, **kwargs)

        monkeypatch.setattr(Path, "stat", refusing_stat)
    else:
        flair.unlink()
        makers = {"dangling": lambda: flair.symlink_to("/nonexistent/flair.nii.gz"),
                  "loop": lambda: flair.symlink_to(flair.name), "directory": flair.mkdir,
                  "fifo": lambda: os.mkfifo(flair)}
        makers[kind]()
    [case] = discover_cases(tmp_path)
    [problem] = case.problems
    assert problem.problem == expected and problem.path == flair
    assert not isinstance(problem, LabelError)


def test_problems_of_the_reference_alone_are_label_errors(brats2020_case):
    seg = brats2020_case / f"{brats2020_case.name}_seg.nii.gz"
    seg.unlink()
    seg.symlink_to("/nonexistent/seg.nii.gz")
    [case] = discover_cases(brats2020_case)
    [problem] = case.problems
    assert isinstance(problem, LabelError) and "the label file is a dangling symbolic link" in str(problem)
    assert case.label == seg


def test_a_plain_folder_may_name_t1ce_t1c(tmp_path):
    folder = write_folder_case(tmp_path, Layout.PLAIN, "patient8", label_values=None)
    (folder / "t1ce.nii.gz").rename(folder / "t1c.nii.gz")
    [case] = discover_cases(folder)
    assert case.images[Modality.T1CE].name == "t1c.nii.gz" and not case.problems


@pytest.mark.parametrize(("layout", "case_id", "adc_name"), [
    (Layout.BRATS2020, "BraTS20_Training_001", "BraTS20_Training_001_adc.nii.gz"),
    (Layout.BRATS2023, "BraTS-GLI-00001-000", "BraTS-GLI-00001-000-adc.nii.gz"),
    (Layout.PLAIN, "patient7", "ADC.nii.gz"),
])
def test_a_model_channel_that_is_no_brats_modality_is_found_by_its_name(tmp_path, layout, case_id, adc_name):
    folder = write_folder_case(tmp_path, layout, case_id)
    save(modality_volume(Modality.T2), folder / adc_name)
    next(p for p in folder.iterdir() if "flair" in p.name or "t2f" in p.name).unlink()  # the model does not take it
    [case] = discover_cases(tmp_path, channels=("t1ce", "adc"))
    assert list(case.images) == ["t1ce", "adc"] and case.images["adc"].name == adc_name
    assert case.images[Modality.T1CE] == case.images["t1ce"]  # modalities look up their channel names
    assert case.problems == ()
    assert case.layout is layout


def test_a_case_without_the_models_other_channel_names_the_file_it_expected(tmp_path):
    write_folder_case(tmp_path, Layout.BRATS2020, "BraTS20_Training_001")
    [case] = discover_cases(tmp_path, channels=("flair", "adc"))
    assert [p.problem for p in case.problems] == ["missing ADC image (expected *_adc.nii.gz)"]


def test_a_folder_of_other_channels_only_is_a_case_for_a_model_taking_them(tmp_path):
    folder = tmp_path / "patient1"
    folder.mkdir()
    for name in ("adc", "dwi"):
        save(modality_volume(Modality.T1), folder / f"{name}.nii.gz")
    with pytest.raises(BratsxError, match="FLAIR, T1, T1ce and T2"):
        discover(tmp_path)
    [case] = discover_cases(tmp_path, channels=("dwi", "adc"))
    assert (case.layout, list(case.images), case.problems) == (Layout.PLAIN, ["dwi", "adc"], ())


def test_an_msd_image_has_no_other_channel(tmp_path):
    dataset = write_msd_case(tmp_path / "Task01_BrainTumour", "BRATS_001")
    [case] = discover_cases(dataset, channels=("t1", "adc"))
    assert list(case.images) == ["t1"]
    assert "MSD 4D image holds FLAIR, T1, T1ce and T2 only" in case.problems[0].problem


def test_channel_names_that_cannot_name_files_are_refused(tmp_path):
    write_folder_case(tmp_path, Layout.PLAIN, "patient7")
    for name in ("ADC", "seg", "a_b"):
        with pytest.raises(BratsxError, match="cannot name an input channel"):
            discover(tmp_path, channels=("t1", name))
