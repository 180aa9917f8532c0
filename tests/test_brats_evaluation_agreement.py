"""bratsx's scores against the challenges' official package, ``brats-evaluation`` (Panoptica), on hand-made maps.

The package pins numpy < 2.3, pandas < 3, rich < 14 and connected-components-3d < 4 through panoptica, which
the dev environment's versions exceed, so it is not in an extra: the test runs where it is installed (a venv
of its own: ``pip install brats-evaluation`` beside bratsx's base dependencies) and skips elsewhere.

Compared: per region of the BraTS 2023 glioma set (the package's ``GoAT`` config: WT, TC, ET from labels 1-3)
and of the 2024-2025 post-treatment set (its ``gli`` config: also NETC, SNFH and RC 4), which regions are
scored, the whole-volume Dice and, on lesions far enough apart that no dilation merges them, the matched,
missed and false-positive lesion counts. HD95 is not compared: Panoptica's whole-volume HD95 is another
definition than bratsx's (:func:`bratsx.metrics.hd95`), 25.0 against 31.9 mm for WT on these maps.
The package matches lesions by connected components and bipartite Dice
matching (no dilation, no volume threshold), so its lesion-wise Dice is another formula and not compared.
"""

import numpy as np
import pytest
from casefiles import save

from bratsx.labels import LabelConvention
from bratsx.scoring import score_label_maps

brats_evaluation = pytest.importorskip("brats_evaluation", reason="brats-evaluation is not installed (its "
                                       "panoptica pins conflict with the dev environment; see the module docstring)")
panoptica = pytest.importorskip("panoptica")

CONFIGS = {LabelConvention.BRATS2023: "GoAT", LabelConvention.BRATS2024: "gli"}


def _maps(with_cavity: bool) -> tuple[np.ndarray, np.ndarray]:
    """A reference and an imperfect prediction: a tumour with core, edema and ET, a far ET lesion the prediction
    misses, a false-positive ET blob, and (2024) a resection cavity found in part. Lesions are >= 60 voxels."""
    reference = np.zeros((64, 64, 64), np.uint8)
    prediction = np.zeros_like(reference)
    reference[8:24, 8:24, 8:24] = 2
    reference[12:20, 12:20, 12:20] = 1
    reference[14:18, 14:18, 14:18] = 3
    reference[44:50, 8:14, 8:14] = 3  # missed
    prediction[9:24, 8:24, 8:23] = 2
    prediction[12:21, 12:20, 12:20] = 1
    prediction[14:18, 14:19, 14:18] = 3
    prediction[8:13, 44:49, 44:49] = 3  # false positive
    if with_cavity:
        reference[40:52, 40:52, 40:52] = 4
        prediction[42:52, 40:52, 40:50] = 4
    return prediction, reference


@pytest.mark.parametrize("label_set", list(CONFIGS))
def test_bratsx_agrees_with_the_official_package(tmp_path, label_set):
    prediction, reference = _maps(with_cavity=label_set is LabelConvention.BRATS2024)
    save(prediction, tmp_path / "pred.nii.gz")
    save(reference, tmp_path / "ref.nii.gz")
    evaluator = panoptica.Panoptica_Evaluator.load_from_config(str(brats_evaluation.config_path(CONFIGS[label_set])))
    official = brats_evaluation.evaluate_single_exam(str(tmp_path / "pred.nii.gz"), str(tmp_path / "ref.nii.gz"),
                                                     "case", evaluator)
    ours = score_label_maps(prediction, label_set, reference, label_set, (1.0, 1.0, 1.0), lesion_wise=True)
    regions = [r.name for r in label_set.label_set.regions]
    assert {name.lower() for name in regions} == {k for k, v in official.items() if isinstance(v, dict)}
    for region in regions:
        theirs = official[region.lower()]
        assert ours[f"dice_{region}"] == pytest.approx(theirs["global_bin_dsc"], abs=1e-9), region
        assert (ours[f"lesions_tp_{region}"], ours[f"lesions_fn_{region}"], ours[f"lesions_fp_{region}"]) == (
            theirs["tp"], theirs["fn"], theirs["fp"]), region
