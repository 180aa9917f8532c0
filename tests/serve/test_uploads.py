import io
import stat
import zipfile

import pytest

from bratsx.errors import BratsxError, CaseError
from bratsx.serve.uploads import UploadedFile, case_id_from_names, extract_zip, guess_role, stage_files
from bratsx.synth import write_synthetic_dataset


@pytest.mark.parametrize("name, role, layout", [
    ("BraTS20_Training_001_flair.nii.gz", "flair", "brats2020"),
    ("BraTS20_Training_001_t1.nii", "t1", "brats2020"),
    ("BraTS20_Training_001_t1ce.nii.gz", "t1ce", "brats2020"),
    ("BraTS-GLI-00001-000-t2f.nii.gz", "flair", "brats2023"),
    ("BraTS-GLI-00001-000-t1c.nii.gz", "t1ce", "brats2023"),
    ("BraTS-GLI-00001-000-seg.nii.gz", "seg", "brats2023"),
    ("T2.nii.gz", "t2", "plain"),
    ("C:\\Users\\me\\t1c.nii.gz", "t1ce", "plain"),
    ("patient_scan.nii.gz", None, None),
    ("flair.txt", None, None),
])
def test_roles_are_guessed_from_names_as_discovery_reads_them(name, role, layout):
    assert guess_role(name) == {"role": role, "layout": layout}


@pytest.mark.parametrize("names, case_id", [
    (["BraTS20_001_flair.nii.gz", "BraTS20_001_t1.nii.gz"], "BraTS20_001"),
    (["../../etc/a_flair.nii", "../../etc/a_t1.nii"], "a"),
    (["<i>x<i>_flair.nii", "<i>x<i>_t2.nii"], "i_x_i"),
    (["BraTS-GLI-00001-000-t1c.nii.gz", "BraTS-GLI-00001-000-t2w.nii.gz"], "BraTS-GLI-00001-000"),
    (["patient7flair.nii", "patient7t1.nii"], "patient7"),
    (["flair.nii.gz", "t1.nii.gz"], "case"),
])
def test_case_ids_of_uploads_are_the_safe_common_prefix(names, case_id):
    assert case_id_from_names(names) == case_id


def _uploads(case_dir, roles=None):
    files = sorted(p for p in case_dir.iterdir() if "seg" not in p.name)
    roles = roles or [guess_role(p.name)["role"] for p in files]
    return [UploadedFile(p.name, r, io.BytesIO(p.read_bytes())) for p, r in zip(files, roles)]


def test_four_files_are_written_under_server_names_and_keep_their_layouts_convention(tmp_path):
    case_dir = write_synthetic_dataset(tmp_path / "in", cases=1, shape=(16, 16, 16), layout="brats2023")[0]
    case, convention = stage_files(_uploads(case_dir), tmp_path / "job")
    assert sorted(p.name for p in case.folder.iterdir()) == ["flair.nii.gz", "t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz"]
    assert case.folder.parent == tmp_path / "job" and convention.value == "brats2023"


@pytest.mark.parametrize("roles, message", [
    (["flair", "t1", "t1ce", "t1ce"], "are both t1ce"),
    (["flair", "t1", "t1ce", "bogus"], "unknown sequence"),
])
def test_bad_role_choices_are_refused_in_one_line(tmp_path, roles, message):
    case_dir = write_synthetic_dataset(tmp_path / "in", cases=1, shape=(16, 16, 16))[0]
    with pytest.raises(BratsxError, match=message) as error:
        stage_files(_uploads(case_dir, roles), tmp_path / "job")
    assert "\n" not in str(error.value)


def test_a_corrupt_file_fails_with_the_loaders_message(tmp_path):
    case_dir = write_synthetic_dataset(tmp_path / "in", cases=1, shape=(16, 16, 16))[0]
    uploads = _uploads(case_dir)
    uploads[0] = UploadedFile(uploads[0].name, "flair", io.BytesIO(b"\x1f\x8bnot gzip at all"))
    with pytest.raises(CaseError, match="flair.nii.gz") as error:
        stage_files(uploads, tmp_path / "job")
    assert str(error.value).startswith("case BraTS20_Synthetic_001, file flair.nii.gz:")


def _zip(path, members):
    """Write a zip of (name, bytes, unix mode or None) members."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


@pytest.mark.parametrize("name, mode, message", [
    ("/etc/x_flair.nii.gz", None, "absolute path"),
    ("C:/x_flair.nii.gz", None, "absolute path"),
    ("case/../../x_flair.nii.gz", None, "outside the archive"),
    ("case\\..\\..\\x_flair.nii.gz", None, "outside the archive"),
    ("case/x_flair.nii.gz", stat.S_IFLNK | 0o777, "symbolic link"),
])
def test_unsafe_zip_members_are_refused_and_nothing_is_written(tmp_path, name, mode, message):
    archive = _zip(tmp_path / "a.zip", [(name, b"data", mode)])
    (tmp_path / "out").mkdir()
    with pytest.raises(BratsxError, match=message):
        extract_zip(archive, "a.zip", tmp_path / "out", max_members=10, max_bytes=10_000)
    assert list((tmp_path / "out").rglob("*")) == []
    assert not (tmp_path / "x_flair.nii.gz").exists()


def test_zip_limits_count_members_and_the_bytes_actually_expanded(tmp_path):
    many = _zip(tmp_path / "many.zip", [(f"c/{i}_flair.nii", b"x", None) for i in range(5)])
    with pytest.raises(BratsxError, match="5 entries, more than the 4 allowed"):
        extract_zip(many, "many.zip", tmp_path / "o1", max_members=4, max_bytes=10_000)
    bomb = _zip(tmp_path / "bomb.zip", [("c/x_flair.nii", b"\0" * 200_000, None)])
    (tmp_path / "o2").mkdir()
    with pytest.raises(BratsxError, match="expands to more than"):
        extract_zip(bomb, "bomb.zip", tmp_path / "o2", max_members=4, max_bytes=100_000)


def test_zip_members_get_safe_names_and_only_nifti_files_are_extracted(tmp_path):
    archive = _zip(tmp_path / "a.zip", [
        ("My Case/My Case_flair.nii.gz", b"1", None), ("My Case/notes.txt", b"2", None),
        ("__MACOSX/._x_flair.nii.gz", b"3", None), ("My Case/.hidden_t1.nii", b"4", None)])
    (tmp_path / "out").mkdir()
    extract_zip(archive, "a.zip", tmp_path / "out", max_members=10, max_bytes=100)
    assert [p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()] == \
        ["My_Case/My_Case_flair.nii.gz"]
