"""Everything downstream of ``bratsx import nnunet`` on results folders nnU-Net trained itself: the torch backend,
``--window box``, ``bratsx bench`` against nnU-Net's predictor on the same results folder, the fp16, int8 and
TensorRT (stand-ins) gates of the import, and a model whose channels are not the four BraTS modalities."""

import shutil

import numpy as np
import pytest
from nnunet_fixtures import DATASETS, results_folder
from scipy import ndimage
from typer.testing import CliRunner

from bratsx.bench.run import AGREEMENT_FLOOR, BenchConfig, run_bench
from bratsx.cases import discover_cases
from bratsx.cli.app import app
from bratsx.errors import BratsxError
from bratsx.export.options import ExportOptions
from bratsx.runtime import open_model
from bratsx.runtime.runner import Runner
from bratsx.runtime.segment import SegmentOptions, segment_case
from bratsx.synth import write_synthetic_dataset

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

REGIONS, LABELS = DATASETS


def _segmented(folder, backend, case, **options):
    with open_model(folder, backend) as model:
        return segment_case(case, Runner.from_backends([model.backend], model.contract, SegmentOptions(**options)))


@pytest.mark.parametrize("dataset", DATASETS, ids=[d.name for d in DATASETS])
def test_the_torch_backend_rebuilds_the_imported_folds_and_segments_as_onnx_runtime(imported, cases_dir, dataset):
    folder = imported(dataset, None)
    case = discover_cases(cases_dir)[0]
    by_torch, by_ort = _segmented(folder, "torch", case), _segmented(folder, "ort", case)
    assert np.abs(by_torch.probabilities - by_ort.probabilities).max() < 1e-3  # export verifies tiles at 1e-4
    assert np.array_equal(by_torch.labels, by_ort.labels)


def test_the_torch_backend_refuses_a_checkpoint_changed_since_the_import(nnunet_root, cases_dir, tmp_path):
    from bratsx.importers.nnunet import import_nnunet
    from bratsx.importers.options import NnunetImport

    results = tmp_path / REGIONS.folder / results_folder(nnunet_root, REGIONS).name
    shutil.copytree(results_folder(nnunet_root, REGIONS), results)
    import_nnunet(results, tmp_path / "model", NnunetImport(folds=(0,)))
    with (results / "fold_0" / "checkpoint_final.pth").open("ab") as checkpoint:
        checkpoint.write(b"\0")
    with pytest.raises(BratsxError, match="changed since model .* was imported from it"):
        open_model(tmp_path / "model", "torch")


def test_the_box_window_runs_an_imported_folder_on_its_own_grid(imported, cases_dir):
    folder = imported(REGIONS, (0,))
    case = discover_cases(cases_dir)[0]
    box, tiles = _segmented(folder, "ort", case, window="box"), _segmented(folder, "ort", case)
    assert box.labels.shape == tiles.labels.shape
    assert box.regions[0].any()  # one pass over the resampled, cropped brain: the network sees what tiles see
    with open_model(folder, "torch") as model:  # the same pass in PyTorch gives the same probabilities
        by_torch = segment_case(case, Runner.from_backends([model.backend], model.contract,
                                                           SegmentOptions(window="box")))
    assert np.abs(by_torch.probabilities - box.probabilities).max() < 1e-3


@pytest.mark.parametrize("tta", [False, True], ids=["plain", "mirror"])
def test_bench_compares_an_imported_folder_with_nnunet_on_its_own_results_folder(imported, cases_dir, tta):
    folder = imported(REGIONS, None)  # the region fixture: its logits reach ~200, averaged raw as nnU-Net does
    report = run_bench(BenchConfig(backends=("ort", "torch"), model=folder, cases_dir=cases_dir, compare=("nnunet",),
                                   tta=tta, repeat=1))
    assert report["tta"] is tta  # bratsx mirrors as nnU-Net mirrors (the peer row runs with the same flag)
    for row in ("ort", "torch"):
        entry = report["backends"][row]
        assert min(entry["agreement_with_nnunet"].values()) >= AGREEMENT_FLOOR, entry["agreement_with_nnunet"]
        assert entry["speedup_vs_nnunet"] is not None  # counted: the same segmentation
    assert min(report["backends"]["torch"]["agreement_with_fp32_tiles"].values()) >= 0.999


def test_bench_refuses_monai_as_the_peer_of_an_imported_folder(imported):
    with pytest.raises(BratsxError, match="compared with its own framework's predictor"):
        run_bench(BenchConfig(backends=("ort",), model=imported(REGIONS, (0,)), compare=("monai",), repeat=1))


def test_import_fp16_and_int8_are_gated_against_the_imported_fp32(nnunet_root, cases_dir, tmp_path):
    pytest.importorskip("nncf")
    from bratsx.importers.nnunet import import_nnunet
    from bratsx.importers.options import NnunetImport

    held_out = tmp_path / "held-out"  # the int8 gate runs on cases it was not calibrated on
    write_synthetic_dataset(held_out, cases=1, shape=(56, 52, 40), seed=12)
    options = ExportOptions(fp16=True, int8=True, calibration_dir=cases_dir, calibration_cases=2,
                            int8_gate_dir=held_out)
    report = import_nnunet(results_folder(nnunet_root, REGIONS), tmp_path / "model", NnunetImport(export=options))
    assert report.fp16_gate.passed
    # the int8 gate measured the int8 file against the imported fp32 on the held-out case only, and the file ships
    # exactly when it passed (on the seeded fixture it measures TC 0.9898 there: refused, the folder kept)
    assert set(report.int8_gate.per_case) == {c.case_id for c in discover_cases(held_out)}
    assert (tmp_path / "model" / "model.int8.xml").is_file() == report.int8_gate.passed
    backends = ["ort", "openvino-int8"] if report.int8_gate.passed else ["ort"]
    for backend in backends:  # each file that shipped runs, with the folder's contract
        assert _segmented(tmp_path / "model", backend, discover_cases(cases_dir)[0]).regions[0].any()


def test_import_trt_builds_and_gates_the_engine_through_bratsx_exports_code(nnunet_root, tmp_path, monkeypatch):
    from gpu_fakes import FakeCudaRuntime, FakeTensorRT, install_cuda, install_tensorrt

    from bratsx.runtime.tensorrt_backend import sidecar_path

    cuda = FakeCudaRuntime()
    trt = FakeTensorRT(cuda)
    install_cuda(monkeypatch, cuda)
    install_tensorrt(monkeypatch, trt)
    workspace = tmp_path / "workspace"
    result = CliRunner().invoke(app, ["import", "nnunet", str(results_folder(nnunet_root, REGIONS)), "--folds", "0",
                                      "--trt", "--max-batch", "2", "--calib-cases", "1", "--name", "engine",
                                      "-w", str(workspace)])
    assert result.exit_code == 0, result.output
    engine = workspace / "models" / "engine" / "model.engine"
    assert engine.is_file() and sidecar_path(engine).is_file() and trt.executions > 0  # the gate ran the engine
    assert (workspace / "models" / "engine" / "model.fp16.onnx").is_file()  # built from the gated fp16 file


def _two_channel_results(root):
    """A results folder of a 2-channel region model (T1ce and FLAIR, in that order), random weights, fold 0."""
    from nnunet_plans import dataset, plans, write_results_folder
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    plans_dict = plans(schemes=("ZScoreNormalization",) * 2, use_mask=(True,) * 2)
    folder = write_results_folder(root, plans_dict, dataset(channel_names=("T1ce", "FLAIR")))
    architecture = plans_dict["configurations"]["3d_fullres"]["architecture"]
    torch.manual_seed(3)
    network = get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                     architecture["_kw_requires_import"], 2, 3, deep_supervision=False)
    torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainer",
                "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": (0, 1, 2)},
               folder / "fold_0" / "checkpoint_final.pth")
    return folder


def test_a_model_of_two_brats_channels_reads_only_those_files_in_its_order(cases_dir, tmp_path):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from bratsx.bench.nnunet_reference import nnunet_results_predictor
    from bratsx.importers.nnunet import import_nnunet
    from bratsx.labels import Modality

    results = _two_channel_results(tmp_path)
    import_nnunet(results, tmp_path / "model")
    case = discover_cases(cases_dir)[0]
    ours = _segmented(tmp_path / "model", "ort", case)
    images, properties = SimpleITKIO().read_images([str(case.images[Modality.T1CE]), str(case.images[Modality.FLAIR])])
    _, theirs = nnunet_results_predictor(results, (0,)).predict_single_npy_array(images, properties, None, None, True)
    # Away from the crop box's edges: there a voxel is covered only by tile edges, whose Gaussian weight (about 1e-6
    # of the peak on a 16^3 patch) underflows nnU-Net's fp16 sums; a random network's uncertain logits show it (up
    # to 0.11 there), a trained one's confident background hides it.
    inner = ndimage.binary_erosion(ours.probabilities.sum(axis=0) > 0, iterations=2)
    assert theirs[:, inner].std(axis=1).min() > 1e-3  # random weights, but a map that varies
    assert np.abs(ours.probabilities - theirs)[:, inner].max() <= 1e-2


def test_a_model_channel_that_is_no_brats_modality_is_read_from_the_files_named_after_it(imported, nnunet_root,
                                                                                          cases_dir, tmp_path):
    """Dataset901's trained network with its FLAIR channel renamed ADC: `bratsx infer` reads each case's `_adc` file
    for it (no FLAIR file needed) and segments exactly as the original model does on the FLAIR file; a case without
    the file fails alone, in one line naming it."""
    import json

    import nibabel as nib

    from bratsx.importers.nnunet import import_nnunet
    from bratsx.importers.options import NnunetImport

    results = tmp_path / REGIONS.folder / results_folder(nnunet_root, REGIONS).name
    shutil.copytree(results_folder(nnunet_root, REGIONS), results)
    description = json.loads((results / "dataset.json").read_text())
    flair = next(index for index, name in description["channel_names"].items() if name.lower() == "flair")
    description["channel_names"][flair] = "ADC"
    (results / "dataset.json").write_text(json.dumps(description))
    import_nnunet(results, tmp_path / "adc-model", NnunetImport(folds=(0,)))

    renamed = tmp_path / "adc-cases"
    shutil.copytree(cases_dir, renamed)
    for index, folder in enumerate(sorted(renamed.iterdir())):
        [flair_file] = folder.glob("*_flair.nii.gz")
        if index == 0:
            flair_file.rename(folder / f"{folder.name}_adc.nii.gz")
        else:
            flair_file.unlink()  # this case has no ADC image
    first, second = sorted(p.name for p in renamed.iterdir())
    checked = CliRunner().invoke(app, ["cases", str(renamed), "--model", str(tmp_path / "adc-model")],
                                 env={"COLUMNS": "200"})
    assert checked.exit_code == 1 and "1 of 2 case(s) have problems" in checked.output
    assert "missing ADC image" in checked.output and "FLAIR" not in checked.output  # the model takes no FLAIR
    from bratsx.serve.state import AppState, ServeSettings

    with pytest.raises(BratsxError, match="the model takes ADC, and the web app uploads FLAIR, T1, T1ce and T2 only"):
        AppState.open(ServeSettings(model=tmp_path / "adc-model", backend="ort"))
    result = CliRunner().invoke(app, ["infer", str(renamed), "--model", str(tmp_path / "adc-model"), "--backend",
                                      "ort", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "missing ADC image (expected *_adc.nii.gz)" in result.output and second in result.output
    assert not (tmp_path / "out" / f"{second}.nii.gz").exists()

    original = CliRunner().invoke(app, ["infer", str(cases_dir / first), "--model", str(imported(REGIONS, (0,))),
                                        "--backend", "ort", "--out", str(tmp_path / "original")])
    assert original.exit_code == 0, original.output
    by_adc, by_flair = (np.asarray(nib.load(tmp_path / out / f"{first}.nii.gz").dataobj) for out in ("out", "original"))
    assert by_adc.any() and np.array_equal(by_adc, by_flair)
