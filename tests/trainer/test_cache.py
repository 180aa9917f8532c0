import os

import numpy as np
import pytest

from bratsx.cases import discover_cases
from bratsx.errors import BratsxError
from bratsx.imageio import load_case
from bratsx.labels import LabelConvention, convert_labels
from bratsx.preprocessing import preprocess
from bratsx.synth import write_synthetic_dataset
from bratsx.trainer.cache import build_cache, read_cache


def test_cached_arrays_are_the_preprocessed_case(tiny_data, tiny_cache):
    case = discover_cases(tiny_data)[0]
    loaded = load_case(case)
    ready = preprocess(loaded.image)
    cached = tiny_cache[0]
    assert cached.case_id == case.case_id
    assert np.array_equal(cached.image(), ready.image)
    assert np.array_equal(cached.mask(), ready.mask)
    expected = convert_labels(loaded.label[ready.box.slices], loaded.convention, LabelConvention.BRATS2023)
    assert np.array_equal(cached.labels(), expected)
    assert isinstance(cached.image(), np.memmap)  # memory-mapped, not decompressed per read


def test_entries_are_reused_and_rebuilt_when_a_source_file_changes(tmp_path):
    write_synthetic_dataset(tmp_path / "data", cases=2, shape=(32, 32, 24), seed=4)
    cases = discover_cases(tmp_path / "data")
    seen = []
    build_cache(cases, tmp_path / "cache", on_case=lambda case_id, built: seen.append(built))
    build_cache(cases, tmp_path / "cache", on_case=lambda case_id, built: seen.append(built))
    assert seen == [True, True, False, False]

    touched = cases[0].images[next(iter(cases[0].images))]
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    seen.clear()
    build_cache(discover_cases(tmp_path / "data"), tmp_path / "cache", on_case=lambda c, built: seen.append(built))
    assert seen == [True, False]
    entries = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "cache").iterdir())
    assert entries == sorted(c.case_id for c in cases)  # the stale entry was removed
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


def test_read_cache_reads_entries_another_process_built_and_names_a_missing_one(tmp_path):
    write_synthetic_dataset(tmp_path / "data", cases=2, shape=(32, 32, 24), seed=4)
    cases = discover_cases(tmp_path / "data")
    built = build_cache(cases[:1], tmp_path / "cache")  # this process's share
    assert read_cache(cases[:1], tmp_path / "cache") == built
    with pytest.raises(BratsxError, match=f"no current cache entry for case {cases[1].case_id}.*every process sees"):
        read_cache(cases, tmp_path / "cache")
    entries = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "cache").iterdir())
    assert entries == [cases[0].case_id]  # reading built nothing


def test_a_glob_character_in_a_case_id_never_touches_another_case(tmp_path):
    from bratsx.cases import discover_cases
    from bratsx.synth import write_synthetic_dataset
    from bratsx.trainer.cache import build_cache

    write_synthetic_dataset(tmp_path / "data", cases=1, shape=(32, 32, 24), layout="plain", seed=1)
    [folder] = list((tmp_path / "data").iterdir())
    folder.rename(tmp_path / "data" / "1")
    (tmp_path / "data" / "?").mkdir()
    for item in (tmp_path / "data" / "1").iterdir():
        (tmp_path / "data" / "?" / item.name).write_bytes(item.read_bytes())
    cases = {c.case_id: c for c in discover_cases(tmp_path / "data")}
    build_cache([cases["1"]], tmp_path / "cache")
    kept = sorted(p.name for p in (tmp_path / "cache").iterdir())
    build_cache([cases["?"]], tmp_path / "cache")
    assert set(kept) <= {p.name for p in (tmp_path / "cache").iterdir()}  # case 1's entry survived case ?'s build
