"""Atomic writes: short temporary names of bratsx's own, and the removal of what a killed write left."""

import os
import subprocess
import sys
import time

import pytest

from bratsx.atomic import (
    NAME_MAX,
    TEMPORARY_PREFIX,
    atomic_folder,
    atomic_path,
    remove_stale_temporaries,
    write_bytes_atomic,
)


def age(path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp), follow_symlinks=False)


@pytest.mark.parametrize("suffix", ["", ".nii.gz"])
def test_temporary_names_stay_short_whatever_the_final_name(tmp_path, suffix):
    final = tmp_path / ("c" * (NAME_MAX - len(suffix)) + suffix)  # the longest name a file may have
    with atomic_path(final, suffix=suffix) as temporary:
        assert temporary.parent == tmp_path
        assert temporary.name.startswith(TEMPORARY_PREFIX) and temporary.name.endswith(suffix)
        assert len(temporary.name.encode()) <= NAME_MAX
        temporary.write_bytes(b"done")
    assert final.read_bytes() == b"done"
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_a_case_id_of_240_bytes_can_be_written(tmp_path):
    final = tmp_path / ("é" * 120 + ".nii.gz")  # 240 bytes of UTF-8 before the suffix
    assert write_bytes_atomic(final, b"x").read_bytes() == b"x"


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    stale_file = tmp_path / f"{TEMPORARY_PREFIX}0123456789abcdef.nii.gz"
    stale_folder = tmp_path / f"{TEMPORARY_PREFIX}fedcba9876543210"
    old_naming = tmp_path / ".BraTS-GLI-00001-000.nii.gz.1a2b3c4d.partial.nii.gz"
    fresh = tmp_path / f"{TEMPORARY_PREFIX}00000000000000aa.onnx"  # another process may be writing it now
    stale_file.write_bytes(b"")
    stale_folder.mkdir()
    (stale_folder / "part.npy").write_bytes(b"x")
    old_naming.write_bytes(b"")
    fresh.write_bytes(b"")
    users = [tmp_path / name for name in (".hidden_notes", "case.nii.gz", ".bratsx-tmp-notes", "x.partial")]
    for path in users:
        path.write_bytes(b"mine")
    for path in (stale_file, stale_folder, old_naming, *users):
        age(path, 3600)
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([stale_file, stale_folder, old_naming])
    assert fresh.exists() and all(path.read_bytes() == b"mine" for path in users)
    assert remove_stale_temporaries(tmp_path / "absent") == []


def test_a_write_killed_midway_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    script = (
        "import sys, time\n"
        "from bratsx.atomic import atomic_path\n"
        f"with atomic_path({str(tmp_path / 'case.nii.gz')!r}, suffix='.nii.gz') as temporary:\n"
        "    temporary.write_bytes(b'half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
    finally:
        writer.kill()  # SIGKILL: no finally clause runs
        writer.wait()
    [left] = list(tmp_path.iterdir())
    assert left.name.startswith(TEMPORARY_PREFIX) and not (tmp_path / "case.nii.gz").exists()
    assert remove_stale_temporaries(tmp_path, min_age_s=0) == [left]
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_replaces_the_folder_only_when_complete(tmp_path):
    target = tmp_path / "entry"
    with pytest.raises(RuntimeError), atomic_folder(target) as staging:
        (staging / "a").write_bytes(b"1")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(target) as staging:
        assert staging.name.startswith(TEMPORARY_PREFIX)
        (staging / "a").write_bytes(b"1")
    assert [p.name for p in tmp_path.iterdir()] == ["entry"] and (target / "a").read_bytes() == b"1"
