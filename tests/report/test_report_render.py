"""One case from disk to pictures: orientation from any storage, colours from any label convention."""

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from reportcases import MARKER_VALUE, SHAPE, write_case

from bratsx.cases import discover_cases
from bratsx.labels import LabelConvention
from bratsx.report.gif import MAX_FRAMES
from bratsx.report.options import RenderOptions
from bratsx.report.overlay import figure
from bratsx.report.render import FIGURE_NAME, GIF_NAME, THUMBNAIL_NAME, load_volumes, render_case


def only_case(root):
    (case,) = discover_cases(root)
    return case


def test_a_case_stored_in_ras_and_in_lps_gives_the_same_picture(tmp_path):
    pictures = []
    for name, ras in (("lps", False), ("ras", True)):
        write_case(tmp_path / name, "case_001", ras=ras, prediction_dir=tmp_path / f"{name}-pred")
        case = only_case(tmp_path / name)
        assert nib.aff2axcodes(nib.load(case.images[next(iter(case.images))]).affine) == tuple(name.upper())
        volumes = load_volumes(case, tmp_path / f"{name}-pred" / "case_001.nii.gz")
        pictures.append(np.asarray(figure(volumes)))
    np.testing.assert_array_equal(pictures[0], pictures[1])


def test_loading_puts_the_marker_at_the_patients_right_anterior_superior(tmp_path):
    for name, ras in (("lps", False), ("ras", True)):
        write_case(tmp_path / name, "case_001", ras=ras)
        volumes = load_volumes(only_case(tmp_path / name), None)
        z, y, x = np.nonzero(volumes.background == MARKER_VALUE)  # canonical axes S, P, L
        depth, height, width = volumes.background.shape
        assert z.min() > depth / 2 and y.max() < height / 2 and x.max() < width / 2, name


@pytest.mark.parametrize("convention", [LabelConvention.BRATS2023, LabelConvention.MSD])
def test_every_label_convention_gives_the_same_tissues_and_picture(tmp_path, convention):
    write_case(tmp_path / "a", "case_001", prediction_dir=tmp_path / "pred-2020")
    write_case(tmp_path / "b", "case_001", prediction_dir=tmp_path / "pred-other", prediction_convention=convention)
    case = only_case(tmp_path / "a")
    baseline = load_volumes(case, tmp_path / "pred-2020" / "case_001.nii.gz")
    given = convention if convention is LabelConvention.MSD else None  # MSD cannot be read from the values
    other = load_volumes(case, tmp_path / "pred-other" / "case_001.nii.gz", RenderOptions(convention=given))
    np.testing.assert_array_equal(baseline.prediction, other.prediction)
    np.testing.assert_array_equal(baseline.prediction, baseline.reference)
    np.testing.assert_array_equal(np.asarray(figure(baseline)), np.asarray(figure(other)))


def test_render_case_writes_the_overlay_the_thumbnail_and_a_small_gif(tmp_path):
    write_case(tmp_path / "cases", "case_001", prediction_dir=tmp_path / "pred")
    prediction = tmp_path / "pred" / "case_001.nii.gz"
    case = only_case(tmp_path / "cases")
    images = render_case("case_001", case, prediction, tmp_path / "out", RenderOptions(gif=True))
    assert images.error is None
    assert (images.figure.name, images.thumbnail.name, images.gif.name) == (FIGURE_NAME, THUMBNAIL_NAME, GIF_NAME)
    with Image.open(images.figure) as picture:
        assert picture.format == "PNG" and picture.mode == "P"
    with Image.open(images.thumbnail) as small:
        assert max(small.size) <= 128
    with Image.open(images.gif) as gif:
        assert 1 < gif.n_frames <= MAX_FRAMES
    assert images.gif.stat().st_size < 300_000
    assert images.volumes_ml["WT"] > images.volumes_ml["TC"] > 0
    assert images.touches_border is False


def test_render_case_without_predicted_tumour_draws_no_gif(tmp_path):
    write_case(tmp_path / "cases", "case_001")
    empty = tmp_path / "empty.nii.gz"
    reference = nib.load(tmp_path / "cases" / "case_001" / "case_001_seg.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), reference.affine), empty)
    images = render_case("case_001", only_case(tmp_path / "cases"), empty, tmp_path / "out", RenderOptions(gif=True))
    assert images.error is None and images.gif is None and images.figure.is_file()
    assert images.volumes_ml == {"WT": 0.0, "TC": 0.0, "ET": 0.0}


def test_render_case_reports_a_prediction_on_another_grid_instead_of_raising(tmp_path):
    write_case(tmp_path / "cases", "case_001")
    wrong = tmp_path / "wrong.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.uint8), np.eye(4)), wrong)
    images = render_case("case_001", only_case(tmp_path / "cases"), wrong, tmp_path / "out")
    assert images.figure is None
    assert "case_001" in images.error and "wrong.nii.gz" in images.error and "grid" in images.error


def test_render_case_without_an_input_case_says_so(tmp_path):
    images = render_case("lonely", None, None, tmp_path / "out")
    assert images.figure is None and "no input case" in images.error
    assert not (tmp_path / "out").exists()


@pytest.mark.real_data
@pytest.mark.parametrize("folder", ["brats2018", "real"])
def test_real_cases_are_drawn(tmp_path, folder):
    from casefiles import real_data

    case = discover_cases(real_data(folder))[0]
    images = render_case(case.case_id, case, case.label, tmp_path, RenderOptions(gif=case.label is not None))
    assert images.error is None and images.figure.stat().st_size > 10_000
    with Image.open(images.figure) as picture:
        assert picture.width > 200 and picture.height > 400


def test_a_background_is_its_own_modality_from_a_case_found_for_it_alone(tmp_path):
    from casefiles import write_msd_case

    from bratsx.labels import Modality

    write_msd_case(tmp_path / "msd", "BRATS_001")  # one 4D file: the frame is picked by the modality
    [case] = discover_cases(tmp_path / "msd", channels=("t2",))
    volumes = load_volumes(case, None, RenderOptions(background=Modality.T2))
    assert float(volumes.background.max()) == 40  # casefiles' T2 code
