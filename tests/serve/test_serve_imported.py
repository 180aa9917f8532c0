"""``bratsx serve`` on a model folder imported from nnU-Net: an uploaded case is segmented as ``bratsx infer``
segments it with that folder (nnU-Net's preprocessing, resampling and labels from the contract)."""

import nibabel as nib
import numpy as np
import pytest
from nnunet_fixtures import DATASETS, results_folder
from serving import case_files, client, upload, wait_for_job

from bratsx.cases import discover_cases
from bratsx.runtime import ModelSpec, RunnerSpec, run_batch
from bratsx.synth import write_synthetic_dataset

pytestmark = pytest.mark.slow
pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

LABELS = DATASETS[1]  # labels at 4 x 1 x 1 mm, thick axis transposed first: the whole model-grid stage runs


def test_an_upload_to_an_imported_folder_is_segmented_as_infer_segments_it(nnunet_root, tmp_path):
    from bratsx.importers.nnunet import import_nnunet

    folder = tmp_path / "imported"
    import_nnunet(results_folder(nnunet_root, LABELS), folder)
    case = write_synthetic_dataset(tmp_path / "cases", cases=1, shape=(48, 48, 32), seed=12)[0]
    with client(model=folder, backend="ort", data_dir=tmp_path / "data") as app:
        files = case_files(case)
        response = upload(app, files, [p.name.split("_")[-1][:-7] for p in files])
        assert response.status_code == 201, response.text
        job = wait_for_job(app, response.json()["id"], timeout=120)
        assert job["state"] == "done", job["error"]
        assert set(job["result"]["volumes_ml"]) == {"WT", "TC", "ET"}
        served = app.get(f"/api/jobs/{job['id']}/download/segmentation").content
    (tmp_path / "served.nii.gz").write_bytes(served)
    with RunnerSpec(ModelSpec(paths=(folder,), backend="ort")).open() as runner:
        run_batch(discover_cases(case), runner, tmp_path / "out")
    inferred = nib.load(tmp_path / "out" / f"{case.name}.nii.gz")
    served_image = nib.load(tmp_path / "served.nii.gz")
    assert np.array_equal(np.asarray(served_image.dataobj), np.asarray(inferred.dataobj))
    assert np.array_equal(served_image.affine, inferred.affine)
    assert np.asarray(inferred.dataobj).any()  # the fixture network predicts tumour on this case
