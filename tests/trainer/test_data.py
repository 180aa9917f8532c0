import numpy as np
import pytest

from bratsx.errors import BratsxError
from bratsx.trainer.data import (
    IndexRange,
    PatchSampler,
    fraction_split,
    k_fold_splits,
    read_split_file,
    write_split_file,
)

PATCH = (16, 16, 16)


def test_a_sample_depends_only_on_seed_and_index(tiny_cache):
    first = PatchSampler(tiny_cache, PATCH, 0.5, seed=3)
    second = PatchSampler(tiny_cache, PATCH, 0.5, seed=3)
    for index in (0, 7, 123):
        image_a, labels_a = first.sample(index)
        image_b, labels_b = second.sample(index)
        assert np.array_equal(image_a, image_b) and np.array_equal(labels_a, labels_b)
    assert not np.array_equal(first.sample(1)[0], first.sample(2)[0])


def test_foreground_oversampling_centres_patches_on_tumour(tiny_cache):
    always = PatchSampler(tiny_cache, PATCH, 1.0, seed=0)
    assert all(always.sample(i)[1].any() for i in range(40))
    never = PatchSampler(tiny_cache, PATCH, 0.0, seed=0)
    share = np.mean([never.sample(i)[1].any() for i in range(40)])
    assert share < 1.0  # random placement misses the tumour sometimes


def test_every_region_gets_centred_on_including_small_et(tiny_cache):
    sampler = PatchSampler(tiny_cache, PATCH, 1.0, seed=0)
    centres = [sampler.sample(i)[1][8, 8, 8] for i in range(60)]
    assert 3 in centres  # the enhancing tumour (cache convention 3) is a patch centre


def test_patches_have_the_patch_shape_and_cases_smaller_than_it_are_padded(tiny_cache):
    big = (48, 48, 48)  # larger than the cropped tiny cases
    image, labels = PatchSampler(tiny_cache, big, 0.5, seed=1).sample(0)
    assert image.shape == (4, *big) and labels.shape == big
    assert image.dtype == np.float32 and labels.dtype == np.uint8
    assert (image == 0).any()  # padding


def test_index_ranges_of_ranks_are_disjoint_and_cover_the_steps():
    ranks = [list(IndexRange(2, 5, batch=2, rank=r, world=3)) for r in range(3)]
    flat = [i for r in ranks for i in r]
    assert len(flat) == len(set(flat)) == 3 * 3 * 2
    assert sorted(flat) == list(range(2 * 3 * 2, 5 * 3 * 2))
    assert len(IndexRange(2, 5, batch=2)) == 6


def test_k_folds_put_every_case_in_exactly_one_validation_fold():
    ids = [f"case_{i}" for i in range(11)]
    folds = k_fold_splits(ids, 5, seed=0)
    validated = [c for f in folds for c in f.val]
    assert sorted(validated) == sorted(ids)
    for fold in folds:
        assert not set(fold.train) & set(fold.val) and len(fold.train) + len(fold.val) == 11


def test_fraction_split_holds_out_at_least_one_case():
    split = fraction_split(["a", "b", "c"], 0.1, seed=0)
    assert len(split.val) == 1 and len(split.train) == 2


def test_too_few_cases_for_the_folds_is_a_clear_error():
    with pytest.raises(BratsxError, match="cannot make 5 folds"):
        k_fold_splits(["a", "b"], 5)


def test_split_file_round_trips_and_single_split_files_are_read(tmp_path):
    folds = k_fold_splits([f"c{i}" for i in range(10)], 5)
    write_split_file(tmp_path / "splits.json", folds)
    assert read_split_file(tmp_path / "splits.json", 3) == folds[3]
    (tmp_path / "one.json").write_text('{"train": ["a", "b"], "val": ["c"]}')
    assert read_split_file(tmp_path / "one.json").val == ("c",)
    with pytest.raises(BratsxError, match="fold 9"):
        read_split_file(tmp_path / "splits.json", 9)
