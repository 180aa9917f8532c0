"""The nnU-Net v2 peer: nnU-Net's own predictor running bratsx's network and weights.

What an nnU-Net user gets for the same model: :class:`nnunetv2.inference.predict_from_raw_data.nnUNetPredictor`
set up with ``manual_initialization`` (bratsx's ``UNet3D``, whose eval-mode forward returns the logits
nnU-Net expects, and its weights as the one parameter set), plans that describe what bratsx trained on
(one ``3d_fullres`` configuration: the model's patch and spacing, ``ZScoreNormalization`` with
``use_mask_for_norm`` for every modality, no transposition) and a dataset description whose regions write
BraTS 2018-2021 labels directly (``regions_class_order`` edema, core, enhancing: the order in which
:func:`bratsx.labels.labels_from_regions` lets inner regions win). Each case then goes through nnU-Net's
own stages, timed one by one: ``SimpleITKIO.read_images``, ``DefaultPreprocessor.run_case_npy`` (crop to
the non-zero box, z-score in the filled non-zero mask; no resampling at the model's spacing),
``predict_logits_from_preprocessed_data`` (tile step 0.5, its Gaussian, fp16 accumulation of logits,
mirroring when asked), ``convert_predicted_logits_to_segmentation_with_correct_shape`` and
``write_seg``: the body of nnU-Net's ``export_prediction_from_logits``.

Orientation: SimpleITK returns a stored L,P,S volume as the ``(z, y, x)`` array bratsx's canonical
orientation is (see :mod:`bratsx.geometry`), so the network sees the same array in both. Cases stored
otherwise are refused rather than silently fed to the network in another orientation.

Needs torch and nnunetv2 (``pip install 'bratsx[dev]'``). nnU-Net prints progress on stdout; it is
logged at debug level instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..cases import Case
from ..contract import ModelContract
from ..errors import BratsxError
from ..extras import optional_import
from ..geometry import CANONICAL_ORIENTATION
from ..labels import BRATS_CHANNELS, OutputMode, Tissue
from ..printed import printed_to_debug_log
from .peer_labels import peer_convention

__all__ = ["NNUNET_CONFIGURATION", "NNUNET_PROBABILITY_NOISE", "nnunet_dataset_json", "nnunet_plans",
           "nnunet_predictor", "nnunet_results_predictor", "nnunet_segment_case", "nnunet_sums_in_float32",
           "nnunet_tile_count", "undecided_by_nnunet"]

logger = logging.getLogger(__name__)

#: The one configuration the plans describe.
NNUNET_CONFIGURATION = "3d_fullres"
#: Stored orientation whose SimpleITK array is bratsx's canonical (z, y, x) array.
_STORED_AS_CANONICAL = "".join(reversed(CANONICAL_ORIENTATION))
#: nnU-Net's tile step (fraction of the patch between neighbouring tiles): its default, overlap 0.5.
TILE_STEP = 0.5


def nnunet_dataset_json(contract: ModelContract) -> dict[str, Any]:
    """nnU-Net's ``dataset.json`` for a bratsx model: channels in bratsx's order and labels that come out
    in the peers' BraTS convention (:func:`~bratsx.bench.peer_labels.peer_convention`)."""
    channels = {str(i): name for i, name in enumerate(contract.modality_order)}
    values = peer_convention(contract).tissue_values
    if contract.output_mode is OutputMode.REGIONS:
        edema, core, enhancing = (values[t] for t in (Tissue.EDEMA, Tissue.NECROTIC_CORE, Tissue.ENHANCING))
        labels: dict[str, Any] = {"background": 0, "whole tumor": [edema, core, enhancing],
                                  "tumor core": [core, enhancing], "enhancing tumor": [enhancing]}
        order: list[int] | None = [edema, core, enhancing]
    else:
        labels = {"background": 0, **{t.name.lower(): v for t, v in values.items()}}
        order = None
    dataset = {"channel_names": channels, "labels": labels, "numTraining": 0, "file_ending": ".nii.gz"}
    if order is not None:
        dataset["regions_class_order"] = order
    return dataset


def nnunet_plans(contract: ModelContract) -> dict[str, Any]:
    """nnU-Net plans describing what the bratsx model was trained on, for ``manual_initialization``.

    The architecture entry is informative only (the network object is handed over directly).
    """
    spacing = [float(s) for s in contract.spacing]
    patch = [int(p) for p in contract.patch_size]
    channels = len(contract.modality_order)
    configuration = {
        "data_identifier": "bratsx", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": patch, "median_image_size_in_voxels": patch, "spacing": spacing,
        "normalization_schemes": ["ZScoreNormalization"] * channels, "use_mask_for_norm": [True] * channels,
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {"network_class_name": "bratsx.network.unet.UNet3D", "arch_kwargs": dict(contract.network),
                         "_kw_requires_import": []},
        "batch_dice": False,
    }
    return {
        "dataset_name": "Dataset000_bratsx", "plans_name": "bratsxPlans", "experiment_planner_used": "bratsx",
        "label_manager": "LabelManager", "image_reader_writer": "SimpleITKIO",
        "original_median_spacing_after_transp": spacing, "original_median_shape_after_transp": patch,
        "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {NNUNET_CONFIGURATION: configuration},
        "foreground_intensity_properties_per_channel": {str(c): {} for c in range(channels)},
    }


def nnunet_predictor(network, contract: ModelContract, mirroring: bool = False, device: str = "cpu"):
    """nnU-Net's predictor with bratsx's network and weights, set up as nnU-Net's trainer sets it up.

    Args:
        network: the bratsx ``UNet3D`` (its eval-mode forward returns logits).
        contract: its contract (patch, spacing, output mode, modalities).
        mirroring: nnU-Net's test-time mirroring over the three spatial axes (8 passes per tile).
        device: ``cpu`` or ``cuda``.

    Returns:
        An initialised ``nnUNetPredictor``.

    Raises:
        BratsxError: nnunetv2 is not installed.
    """
    with printed_to_debug_log(logger, "nnU-Net"):
        PlansManager = optional_import("nnunetv2.utilities.plans_handling.plans_handler", "dev",
                                       attribute="PlansManager")
    predictor = _bare_predictor(mirroring, device)
    plans = PlansManager(nnunet_plans(contract))
    network = network.to(device).eval()
    predictor.manual_initialization(network, plans, plans.get_configuration(NNUNET_CONFIGURATION),
                                    [network.state_dict()], nnunet_dataset_json(contract), "bratsx", (0, 1, 2))
    return predictor


def _bare_predictor(mirroring: bool, device: str):
    """An ``nnUNetPredictor`` with nnU-Net's inference defaults (tile step 0.5, Gaussian), not yet initialised.

    Raises:
        BratsxError: nnunetv2 is not installed.
    """
    import torch

    with printed_to_debug_log(logger, "nnU-Net"):
        nnUNetPredictor = optional_import("nnunetv2.inference.predict_from_raw_data", "dev",
                                          attribute="nnUNetPredictor")
        return nnUNetPredictor(tile_step_size=TILE_STEP, use_gaussian=True, use_mirroring=mirroring,
                               perform_everything_on_device=device.startswith("cuda"), device=torch.device(device),
                               verbose=False, allow_tqdm=False)


def nnunet_results_predictor(results: Path, folds: tuple[int, ...] | None = None, mirroring: bool = False,
                             device: str = "cpu", checkpoint: str = "checkpoint_final.pth"):
    """nnU-Net's predictor on an nnU-Net results folder, as ``nnUNetv2_predict`` sets it up (the peer of a model
    imported with ``bratsx import nnunet`` from that folder).

    Args:
        results: the trained configuration folder.
        folds: folds to average; ``None``: every fold present.
        mirroring: test-time mirroring over the checkpoint's allowed axes.
        device: ``cpu`` or ``cuda``.
        checkpoint: checkpoint file name in each fold folder.

    Raises:
        BratsxError: nnunetv2 is not installed.
    """
    predictor = _bare_predictor(mirroring, device)
    with printed_to_debug_log(logger, "nnU-Net"):
        predictor.initialize_from_trained_model_folder(str(results), use_folds=folds, checkpoint_name=checkpoint)
    return predictor


def _check_orientation(case: Case, path: Path) -> None:
    orientation = "".join(nib.aff2axcodes(nib.load(path).affine))
    if orientation != _STORED_AS_CANONICAL:
        raise BratsxError(f"case {case.case_id}: {path.name} is stored {orientation}; nnU-Net's SimpleITK reader would "
                          f"hand the network another orientation than bratsx (which reads {_STORED_AS_CANONICAL} "
                          "volumes as they are); leave the case out of --compare nnunet or store it as "
                          f"{_STORED_AS_CANONICAL}")


def nnunet_segment_case(predictor, case: Case, out_dir: Path,
                        modality_order: tuple[str, ...] = BRATS_CHANNELS,
                        probabilities_out: Path | None = None) -> dict[str, float]:
    """Segment one case through nnU-Net's own stages into ``out_dir/<id>.nii.gz``; seconds per stage.

    ``modality_order`` is the model's channel order (an imported model's contract says it). With
    ``probabilities_out``, nnU-Net's probabilities on the case's grid (what its ``--save_probabilities`` keeps) are
    also saved there, float32 ``(channels, *file voxel axes)`` ``.npy``: what :func:`undecided_by_nnunet` reads.

    Raises:
        BratsxError: a case not stored as L,P,S (see the module docstring).
    """
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    files = [str(case.images[name]) for name in modality_order]
    _check_orientation(case, Path(files[0]))
    plans, configuration = predictor.plans_manager, predictor.configuration_manager
    reader = plans.image_reader_writer_class()
    seconds = {}
    with printed_to_debug_log(logger, "nnU-Net"):
        start = time.perf_counter()
        data, properties = reader.read_images(files)
        seconds["load"] = time.perf_counter() - start
        start = time.perf_counter()
        data, _, properties = configuration.preprocessor_class(verbose=False).run_case_npy(
            data, None, properties, plans, configuration, predictor.dataset_json)
        seconds["preprocess"] = time.perf_counter() - start
        start = time.perf_counter()
        import torch

        logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
        seconds["inference"] = time.perf_counter() - start
        start = time.perf_counter()
        converted = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, plans, configuration, predictor.label_manager, properties,
            return_probabilities=probabilities_out is not None)
        segmentation = converted if probabilities_out is None else converted[0]
        seconds["postprocess"] = time.perf_counter() - start
        start = time.perf_counter()
        reader.write_seg(segmentation, str(out_dir / f"{case.case_id}{predictor.dataset_json['file_ending']}"),
                         properties)
        seconds["write"] = time.perf_counter() - start
    if probabilities_out is not None:  # SimpleITK's (z, y, x) arrays are the file's voxel axes reversed
        np.save(probabilities_out, np.ascontiguousarray(converted[1].transpose(0, 3, 2, 1), dtype=np.float32))
    return seconds


#: How close to its decision nnU-Net's own probabilities may be for its label to be noise: nnU-Net accumulates
#: logits in fp16 (relative error ~1e-3, a few rounding steps per voxel), which moves probabilities by up to a few
#: 1e-3; a wrong axis, spacing or normalisation moves them by tenths.
NNUNET_PROBABILITY_NOISE = 2e-2


def undecided_by_nnunet(probabilities: np.ndarray, regions: bool,
                        tolerance: float = NNUNET_PROBABILITY_NOISE) -> np.ndarray:
    """Voxels whose label nnU-Net's own fp16 precision cannot settle: a region's probability within ``tolerance`` of
    0.5 (``regions``: sigmoid outputs), or the two most likely labels within twice that of each other (softmax)."""
    if regions:
        return (np.abs(probabilities - 0.5) < tolerance).any(axis=0)
    ranked = np.sort(probabilities, axis=0)
    return ranked[-1] - ranked[-2] < 2 * tolerance


@contextmanager
def nnunet_sums_in_float32() -> Iterator[None]:
    """nnU-Net's sliding window with its sums in float32, while the block runs.

    ``nnUNetPredictor`` accumulates the Gaussian-weighted logits and the weights in float16 buffers (``torch.half``,
    whatever the network's precision) and rounds its Gaussian to float16. Here both buffers and the Gaussian are
    float32 (``torch.zeros`` asked for ``torch.half`` gives float32; its ``compute_gaussian`` is asked for
    float32), and nothing else changes: how far bratsx is from *this* run, against how far stock nnU-Net is from it,
    tells nnU-Net's rounding from a real difference. For measurements only: ``torch.zeros`` is swapped for the whole
    process while the block runs.
    """
    import torch
    from nnunetv2.inference import predict_from_raw_data

    zeros, gaussian = torch.zeros, predict_from_raw_data.compute_gaussian

    def zeros_float32(*size: Any, dtype: Any = None, **options: Any) -> Any:
        return zeros(*size, dtype=torch.float32 if dtype == torch.half else dtype, **options)

    def gaussian_float32(*args: Any, **options: Any) -> Any:
        return gaussian(*args, **{**options, "dtype": torch.float32})

    torch.zeros, predict_from_raw_data.compute_gaussian = zeros_float32, gaussian_float32
    try:
        yield
    finally:
        torch.zeros, predict_from_raw_data.compute_gaussian = zeros, gaussian


def nnunet_tile_count(predictor, shape: tuple[int, int, int]) -> int:
    """How many tiles nnU-Net plans for a cropped volume of ``shape`` (padded to the patch first, as it does)."""
    padded = tuple(max(s, p) for s, p in zip(shape, predictor.configuration_manager.patch_size))
    return len(predictor._internal_get_sliding_window_slicers(padded))
