"""The web app segments with the model folder's post-processing spec, as infer does."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
from serving import case_files, client, upload, wait_for_job

from bratsx.modelfolder import ModelFolder, set_postprocess
from bratsx.postprocess import PostprocessSpec


def test_an_upload_gets_the_folders_tuned_spec(tmp_path, model_folder, small_case):
    folder = shutil.copytree(model_folder, tmp_path / "model")
    set_postprocess(ModelFolder.read(folder), PostprocessSpec(min_volume_mm3={"WT": 1e12}), {"metric": "by hand"})
    with client(model=folder, backend="ort", data_dir=tmp_path / "data") as app:
        files = case_files(small_case, with_label=False)
        response = upload(app, files, [p.name.split("_")[-1][:-7] for p in files])
        assert response.status_code == 201, response.text
        job = wait_for_job(app, response.json()["id"])
        assert job["state"] == "done", job["error"]
        seg = app.get(f"/api/jobs/{job['id']}/download/segmentation")
    (tmp_path / "seg.nii.gz").write_bytes(seg.content)
    assert not np.asarray(nib.load(tmp_path / "seg.nii.gz").dataobj).any()  # every component was dropped
