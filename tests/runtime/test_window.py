"""Single-pass inference over the brain box, the backends' any-shape runs, and the inference crop."""

import numpy as np
import pytest

from bratsx.preprocessing import INFERENCE_MARGIN, brain_mask, crop_box
from bratsx.sliding_window import box_predict
from bratsx.synth import write_synthetic_dataset


def test_box_predict_pads_to_the_divisor_and_crops_back():
    seen = []

    def network(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        return batch[:, :2] * 2

    image = np.random.default_rng(0).normal(size=(4, 17, 30, 9)).astype(np.float32)
    out = box_predict(image, 8, network)
    assert seen == [(1, 4, 24, 32, 16)]
    np.testing.assert_array_equal(out, image[:2] * 2)


def test_the_inference_crop_is_the_brain_box_without_margin(tmp_path):
    from bratsx.cases import discover_cases
    from bratsx.contract import ModelContract
    from bratsx.runtime.segment import prepare_case

    write_synthetic_dataset(tmp_path, cases=1, shape=(40, 36, 30), seed=5)
    contract = ModelContract((16, 16, 16), "regions", {"features": [4, 8, 16]})
    prepared = prepare_case(discover_cases(tmp_path)[0], contract)
    assert INFERENCE_MARGIN == 0 and contract.crop_margin == 2  # a model's training margin is not used
    assert prepared.ready.box == crop_box(brain_mask(prepared.loaded.image), margin=0)


@pytest.fixture(scope="module")
def tiny_model(tiny_run, tmp_path_factory):
    pytest.importorskip("openvino")
    from bratsx.export.pipeline import export_model

    folder = tmp_path_factory.mktemp("window_model")
    export_model(tiny_run, folder)
    return folder


@pytest.fixture(scope="module")
def tiny_case(tmp_path_factory):
    from bratsx.cases import discover_cases

    root = tmp_path_factory.mktemp("window_case")
    write_synthetic_dataset(root, cases=1, shape=(40, 36, 30), seed=5)
    return discover_cases(root)[0]


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_onnx_backends_run_any_divisible_shape_as_pytorch(tiny_model, tiny_run, backend):
    from bratsx.runtime import open_model

    volume = np.random.default_rng(1).normal(size=(1, 4, 32, 48, 16)).astype(np.float32)
    with open_model(tiny_model, backend) as opened, open_model(tiny_run, "torch") as reference:
        got = opened.backend.run(volume)
        tile = opened.backend.run(volume[..., :16, :16, :16])  # the tile shape still runs as before
        np.testing.assert_allclose(got, reference.backend.run(volume), atol=1e-3)
    assert tile.shape == (1, 3, 16, 16, 16)


def test_box_window_segments_a_case_as_one_pass_on_every_backend(tiny_model, tiny_run, tiny_case):
    from bratsx.runtime import ModelSpec, RunnerSpec
    from bratsx.runtime.segment import SegmentOptions, Window, segment_case

    results = {}
    for backend, model in (("ort", tiny_model), ("openvino", tiny_model), ("torch", tiny_run)):
        with RunnerSpec(ModelSpec(paths=(model,), backend=backend), SegmentOptions(window="box")).open() as runner:
            calls = []
            segmented = segment_case(tiny_case, runner, on_tiles=lambda done, total: calls.append((done, total)))
        assert calls == [(1, 1)]
        results[backend] = segmented.probabilities
    for backend in ("ort", "openvino"):
        np.testing.assert_allclose(results[backend], results["torch"], atol=1e-3)
    assert SegmentOptions().window is Window.TILES  # tiles stay the default


def test_box_window_mirrors_one_flip_per_call(tiny_run, tiny_case):
    from bratsx.runtime import Runner, open_model
    from bratsx.runtime.segment import SegmentOptions, segment_case

    with open_model(tiny_run, "torch") as opened:
        batches = []
        run = opened.backend.run
        opened.backend.run = lambda batch: batches.append(len(batch)) or run(batch)
        segment_case(tiny_case, Runner.from_backends([opened.backend], opened.contract,
                                                     SegmentOptions(window="box", tta=True)))
    assert batches == [1] * 8
