"""nnU-Net v2 as a peer: its own predictor on bratsx's network and weights, and its tile plan against bratsx's."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window
from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
from sharpened import sharpened_checkpoint

from bratsx.bench.nnunet_reference import nnunet_predictor, nnunet_segment_case, nnunet_tile_count
from bratsx.cases import discover_cases
from bratsx.errors import BratsxError
from bratsx.imageio import read_label_file
from bratsx.labels import LabelConvention, regions_from_labels
from bratsx.metrics import dice
from bratsx.network.checkpoint import model_from_checkpoint
from bratsx.preprocessing import INFERENCE_MARGIN, preprocess
from bratsx.runtime import open_model
from bratsx.runtime.runner import Runner
from bratsx.runtime.segment import SegmentOptions, prepare_case, segment_case
from bratsx.sliding_window import plan_tiles
from bratsx.synth import write_synthetic_dataset


@pytest.fixture(scope="module")
def sharp(tiny_run, tmp_path_factory):
    return sharpened_checkpoint(tiny_run, tmp_path_factory.mktemp("sharp") / "sharp.pt")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet_cases")
    write_synthetic_dataset(root, cases=1, shape=(40, 36, 30), seed=5)
    return discover_cases(root)[0]


def _nnunet_tiles(image: np.ndarray, patch: tuple[int, int, int]) -> int:
    """Tiles nnU-Net plans for an image (its crop to the non-zero box, padding to the patch, step 0.5)."""
    cropped, _, _ = crop_to_nonzero(image)
    shape = [max(s, p) for s, p in zip(cropped.shape[1:], patch)]
    return int(np.prod([len(steps) for steps in compute_steps_for_sliding_window(shape, patch, 0.5)]))


@pytest.mark.parametrize("seed", range(6))
def test_bratsx_never_plans_more_tiles_than_nnunet(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(40, 90, size=3))
    image = np.zeros((4, *shape), dtype=np.float32)
    start = [int(rng.integers(0, s // 3)) for s in shape]
    stop = [int(rng.integers(2 * s // 3, s)) for s in shape]
    image[(slice(None), *(slice(a, b) for a, b in zip(start, stop)))] = rng.normal(size=(4, *np.subtract(stop, start)))
    patch = (32, 32, 32)
    ready = preprocess(image, INFERENCE_MARGIN)
    padded = tuple(max(s, p) for s, p in zip(ready.image.shape[1:], patch))
    mask = np.pad(ready.mask, [((p - s) // 2, p - s - (p - s) // 2) for s, p in zip(ready.mask.shape, padded)])
    assert len(plan_tiles(padded, patch, 0.5, mask)) <= _nnunet_tiles(image, patch)


def test_inference_crop_is_nnunets_nonzero_box(case, sharp):
    contract = model_from_checkpoint(sharp).contract
    prepared = prepare_case(case, contract)
    _, _, bbox = crop_to_nonzero(prepared.loaded.image.copy())
    assert [list(pair) for pair in zip(prepared.ready.box.start, prepared.ready.box.stop)] == bbox


def test_nnunet_predictor_agrees_with_bratsx_on_the_same_weights(case, sharp, tmp_path):
    trained = model_from_checkpoint(sharp)
    predictor = nnunet_predictor(trained.network, trained.contract, mirroring=False)
    seconds = nnunet_segment_case(predictor, case, tmp_path)
    assert set(seconds) == {"load", "preprocess", "inference", "postprocess", "write"}
    stored, geometry = read_label_file(tmp_path / f"{case.case_id}.nii.gz", case.case_id)
    nnunet = regions_from_labels(geometry.to_canonical(stored.astype(np.uint8)), LabelConvention.BRATS2020)
    with open_model(sharp, "torch") as opened:
        segmented = segment_case(case, Runner.from_backends([opened.backend], opened.contract, SegmentOptions()))
    bratsx = regions_from_labels(segmented.labels, segmented.convention)  # as written: the regions nested
    assert bratsx[0].sum() > 100  # a mask worth comparing
    assert min(dice(bratsx[c], nnunet[c]) for c in range(3)) >= 0.99


def test_nnunet_tile_count_matches_its_planner(case, sharp):
    trained = model_from_checkpoint(sharp)
    predictor = nnunet_predictor(trained.network, trained.contract)
    assert nnunet_tile_count(predictor, (40, 36, 30)) == 4 * 4 * 3  # ceil((size - 16) / 8) + 1 steps per axis
    assert nnunet_tile_count(predictor, (10, 16, 16)) == 1  # padded to the patch first


def test_a_case_not_stored_lps_is_refused(tmp_path, sharp):
    import nibabel as nib

    write_synthetic_dataset(tmp_path / "ras", cases=1, shape=(24, 24, 20), seed=1)
    ras = discover_cases(tmp_path / "ras")[0]
    for path in ras.images.values():
        image = nib.load(path)
        nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), np.diag([1.0, 1.0, 1.0, 1.0])), path)
    trained = model_from_checkpoint(sharp)
    predictor = nnunet_predictor(trained.network, trained.contract)
    with pytest.raises(BratsxError, match="stored RAS"):
        nnunet_segment_case(predictor, ras, tmp_path)


def test_nnunet_sums_in_float32_change_only_its_buffers_and_only_inside_the_block(case, sharp):
    from bratsx.bench.nnunet_reference import nnunet_sums_in_float32

    trained = model_from_checkpoint(sharp)
    predictor = nnunet_predictor(trained.network, trained.contract)
    ready = prepare_case(case, trained.contract).ready
    image = torch.from_numpy(np.ascontiguousarray(ready.image))
    stock = predictor.predict_sliding_window_return_logits(image)
    with nnunet_sums_in_float32():
        wide = predictor.predict_sliding_window_return_logits(image)
    assert stock.dtype == torch.half and wide.dtype == torch.float32
    assert torch.zeros(1, dtype=torch.half).dtype == torch.half  # restored
    difference = (wide - stock.float()).abs()
    inner = difference[:, 2:-2, 2:-2, 2:-2].max().item()  # the faces: only tile edges, fp16 weights underflow there
    assert 0 < inner < 1e-2 * wide.abs().max().item()  # the same prediction, without fp16's rounding
