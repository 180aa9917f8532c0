"""The web app under real use, through its API: the defects found by trying it as a new user (issue 26, part 2),
its limits and its pushed progress. The browser side is in ``test_browser.py``."""

import io
import json
import threading
import time
import zipfile

import pytest
from serving import case_files, client, upload, wait_for_job

from bratsx.serve.uploads import case_from_zip, extract_zip
from bratsx.synth import write_synthetic_dataset


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_review_serves_a_case_whose_folder_is_a_link_as_infer_reads_it(tmp_path, batch):
    """Defect 1: case folders that are links (which bratsx infer accepts) answered 404 in review."""
    cases, predictions = batch
    linked = tmp_path / "linked"
    linked.mkdir()
    for folder in cases.iterdir():
        (linked / folder.name).symlink_to(folder, target_is_directory=True)
    (tmp_path / "elsewhere.nii.gz").write_bytes((cases / "BraTS20_Synthetic_001" /
                                                 "BraTS20_Synthetic_001_t2.nii.gz").read_bytes())
    with client(cases_dir=linked, predictions_dir=predictions) as app:
        served = app.get("/api/review/cases/BraTS20_Synthetic_001/volumes/flair")
        assert served.status_code == 200, served.text
        assert served.content == (cases / "BraTS20_Synthetic_001" / "BraTS20_Synthetic_001_flair.nii.gz").read_bytes()
        assert app.get("/api/review/cases/BraTS20_Synthetic_001/volumes/seg").status_code == 200


def test_a_link_inside_a_linked_case_folder_still_leads_nowhere(tmp_path, batch):
    cases, predictions = batch
    copied = tmp_path / "copied"
    target = copied / "BraTS20_Synthetic_001"
    target.mkdir(parents=True)
    source = cases / "BraTS20_Synthetic_001"
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    outside = tmp_path / "secret.nii.gz"
    outside.write_bytes((target / "BraTS20_Synthetic_001_flair.nii.gz").read_bytes())
    (target / "BraTS20_Synthetic_001_flair.nii.gz").unlink()
    (target / "BraTS20_Synthetic_001_flair.nii.gz").symlink_to(outside)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "BraTS20_Synthetic_001").symlink_to(target, target_is_directory=True)
    with client(cases_dir=linked, predictions_dir=predictions) as app:
        assert app.get("/api/review/cases/BraTS20_Synthetic_001/volumes/flair").status_code == 404
        assert app.get("/api/review/cases/BraTS20_Synthetic_001/volumes/t2").status_code == 200


@pytest.mark.parametrize("prefix, upload_name, case_id", [
    ("", "BraTS20_Synthetic_001.zip", "BraTS20_Synthetic_001"),          # files at the root, named by their prefix
    ("cases/BraTS20_Synthetic_001/", "cases.zip", "BraTS20_Synthetic_001"),  # a zip of the parent folder
    ("a/b/BraTS20_Synthetic_001/", "deep.zip", "BraTS20_Synthetic_001"),
])
def test_a_zip_of_loose_files_or_of_a_parent_folder_gives_the_case_its_own_name(tmp_path, small_case, prefix,
                                                                                  upload_name, case_id):
    """Defect 6: files at a zip's root gave the case the server's folder name (upload.nii.gz), a zip of the
    parent folder failed."""
    archive = tmp_path / "upload.zip"
    archive.write_bytes(_zip({f"{prefix}{p.name}": p.read_bytes() for p in case_files(small_case)}))
    folder = tmp_path / "upload"
    folder.mkdir()
    extract_zip(archive, upload_name, folder, 64, 1 << 30)
    assert case_from_zip(folder, upload_name).case_id == case_id


def test_loose_files_without_a_common_prefix_take_the_zips_name(tmp_path, small_case):
    archive = tmp_path / "upload.zip"
    archive.write_bytes(_zip({f"{p.name.split('_')[-1]}": p.read_bytes() for p in case_files(small_case)}))
    folder = tmp_path / "upload"
    folder.mkdir()
    extract_zip(archive, "patient 7.zip", folder, 64, 1 << 30)
    assert case_from_zip(folder, "patient 7.zip").case_id == "patient_7"


def test_a_zip_of_loose_files_downloads_under_its_case_name(tmp_path, model_folder, small_case):
    content = _zip({p.name: p.read_bytes() for p in case_files(small_case)})
    with client(model=model_folder, backend="ort") as app:
        response = app.post("/api/jobs", files=[("files", ("Archive.zip", content))])
        assert response.status_code == 201, response.text
        job = wait_for_job(app, response.json()["id"])
        download = app.get(f"/api/jobs/{job['id']}/download/segmentation")
    assert job["state"] == "done" and download.headers["content-disposition"] == \
        f'attachment; filename="{small_case.name}.nii.gz"'


def test_a_file_with_no_sequence_chosen_is_refused_by_its_name(tmp_path, model_folder, small_case):
    """Defect 10 (server side): a file whose name says no sequence, sent with none chosen."""
    files = case_files(small_case)
    with client(model=model_folder, backend="ort", data_dir=tmp_path / "data") as app:
        response = app.post("/api/jobs", files=[("files", (f"scan{i}.nii.gz", p.read_bytes()))
                                                for i, p in enumerate(files)],
                            data={"roles": ["flair", "t1", "", "t2"]})
    assert response.status_code == 422
    assert response.json()["detail"] == "scan2.nii.gz: no sequence chosen (its name says none); choose one of " \
                                        "flair, t1, t1ce, t2, seg"
    assert list((tmp_path / "data").iterdir()) == []


def test_more_files_than_allowed_are_refused_with_the_flag_to_change(tmp_path, model_folder, small_case):
    files = case_files(small_case, with_label=True)
    with client(model=model_folder, backend="ort", max_files=4, data_dir=tmp_path / "data") as app:
        response = upload(app, files)
    assert response.status_code == 422 and "(its --max-files)" in response.json()["detail"]
    assert response.json()["detail"].startswith("5 files uploaded, more than the 4")
    assert list((tmp_path / "data").iterdir()) == []


def test_a_full_queue_refuses_uploads_with_the_flag_to_change_and_takes_them_again_once_one_starts(
        tmp_path, model_folder, small_case, monkeypatch):
    release = threading.Event()
    from bratsx.serve import state as state_module

    original = state_module.run_job
    monkeypatch.setattr(state_module, "run_job", lambda job, runner, progress: (
        release.wait(60), original(job, runner, progress))[1])
    with client(model=model_folder, backend="ort", max_queued_jobs=1, data_dir=tmp_path / "data") as app:
        first = upload(app, case_files(small_case)).json()
        while app.get(f"/api/jobs/{first['id']}").json()["state"] != "running":
            time.sleep(0.02)
        second = upload(app, case_files(small_case))
        refused = upload(app, case_files(small_case))
        release.set()
        done = [wait_for_job(app, job["id"])["state"] for job in (first, second.json())]
        again = upload(app, case_files(small_case))
        assert wait_for_job(app, again.json()["id"])["state"] == "done"
    assert second.status_code == 201 and refused.status_code == 429 and done == ["done", "done"]
    assert refused.json()["detail"] == "1 jobs already wait to start, the most this server queues (its " \
                                       "--max-queued-jobs): upload again when one has started"
    assert len(list((tmp_path / "data").iterdir())) == 3  # the refused upload wrote nothing


def _events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_progress_is_pushed_as_server_sent_events_until_the_job_ends(model_folder, small_case):
    with client(model=model_folder, backend="ort") as app:
        job = upload(app, case_files(small_case)).json()
        with app.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = _events("".join(stream.iter_text()))
        listed = app.get("/api/jobs").json()
    assert {name for name, _ in events} == {"job"} and events[-1][1]["state"] == "done"
    order = ["queued", "running", "done"]
    states = [order.index(data["state"]) for _, data in events]
    assert states == sorted(states) and events[-1][1]["result"]["case_id"] == small_case.name
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["state"] == "done"


def test_volumes_that_would_expand_past_the_limit_are_refused_with_the_flag_to_change(tmp_path, model_folder,
                                                                                      small_case):
    """Decompressed size: four .nii.gz files whose volumes, once read, exceed --max-unzipped-mb."""
    with client(model=model_folder, backend="ort", max_unzipped_mb=0.1, data_dir=tmp_path / "data") as app:
        response = upload(app, case_files(small_case))
    assert response.status_code == 422
    assert response.json()["detail"] == f"case {small_case.name}: volumes of (32, 32, 24) voxels are too large for " \
                                        "this server (its --max-unzipped-mb)"
    assert list((tmp_path / "data").iterdir()) == []


def test_a_failed_jobs_one_line_reason_is_its_last_event(tmp_path, model_folder, small_case):
    import nibabel as nib
    import numpy as np

    broken = tmp_path / "broken"
    broken.mkdir()
    for path in case_files(small_case):
        image = nib.load(path)
        data = np.asarray(image.dataobj, dtype=np.float32)
        if path.name.endswith("_t2.nii.gz"):
            data[1, 2, 3] = np.inf
        nib.save(nib.Nifti1Image(data, image.affine), broken / path.name)
    with client(model=model_folder, backend="ort") as app:
        job = upload(app, case_files(broken)).json()
        with app.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
            name, last = _events("".join(stream.iter_text()))[-1]
    assert (name, last["state"]) == ("job", "failed")
    assert last["error"] == f"case {small_case.name}, file t2.nii.gz: T2 has 1 NaN or infinite voxels"


def test_the_events_of_an_expired_job_say_so(model_folder, small_case):
    with client(model=model_folder, backend="ort") as app:
        job = wait_for_job(app, upload(app, case_files(small_case)).json()["id"])
        app.app.state.bratsx.queue.expire(now=float("inf"))
        assert app.get(f"/api/jobs/{job['id']}/events").status_code == 404
        assert app.get("/api/jobs").json() == []


def test_two_uploads_at_once_and_one_during_a_review_give_what_each_gives_alone(tmp_path, model_folder, batch):
    """Concurrency: two jobs segmented at once on one model (two job threads), while a batch is reviewed (its
    volumes read, verdicts written), give the bytes of the single runs."""
    import shutil

    cases = write_synthetic_dataset(tmp_path / "cases", cases=2, shape=(32, 32, 24), seed=11)
    with client(model=model_folder, backend="ort") as app:
        alone = {}
        for case in cases:
            job = wait_for_job(app, upload(app, case_files(case)).json()["id"])
            alone[case.name] = app.get(f"/api/jobs/{job['id']}/download/segmentation").content
    reviewed, predictions = batch[0], tmp_path / "predictions"
    shutil.copytree(batch[1], predictions)
    with client(model=model_folder, backend="ort", jobs_per_model=2, cases_dir=reviewed,
                predictions_dir=predictions) as app:
        answers: dict[str, dict] = {}
        review_codes: list[int] = []

        def review() -> None:
            for index in range(20):
                review_codes.append(app.get("/api/review/cases/BraTS20_Synthetic_001/volumes/seg").status_code)
                review_codes.append(app.post("/api/review/cases/BraTS20_Synthetic_001/verdict",
                                             json={"verdict": "pass", "comment": str(index)}).status_code)

        threads = [threading.Thread(target=lambda c=case: answers.update({c.name: upload(app, case_files(c)).json()}))
                   for case in cases]
        threads.append(threading.Thread(target=review))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        together = {name: wait_for_job(app, job["id"]) for name, job in answers.items()}
        served = {name: app.get(f"/api/jobs/{job['id']}/download/segmentation").content
                  for name, job in together.items()}
    assert served == alone and set(review_codes) == {200}


def _painted(prediction, change) -> bytes:
    import nibabel as nib
    import numpy as np

    image = nib.load(prediction)
    data = np.asarray(image.dataobj).copy()
    change(data)
    return nib.Nifti1Image(data.astype(np.uint8), image.affine).to_bytes()


def test_a_correction_is_saved_beside_the_prediction_with_its_volumes_and_listed_in_qc_csv(tmp_path, batch):
    import shutil

    import nibabel as nib
    import numpy as np

    from bratsx.report.qc import read_qc

    cases, original = batch
    predictions = tmp_path / "predictions"
    shutil.copytree(original, predictions)
    prediction = predictions / "BraTS20_Synthetic_001.nii.gz"
    before = prediction.read_bytes()

    def paint(data):
        data[:] = 0
        data[:4, :5, :2] = 2  # 40 voxels of edema: WT only

    with client(cases_dir=cases, predictions_dir=predictions) as app:
        app.post("/api/review/cases/BraTS20_Synthetic_001/verdict", json={"verdict": "fail", "comment": "too big"})
        saved = app.post("/api/review/cases/BraTS20_Synthetic_001/correction?reviewer=Dr.%20X",
                         content=_painted(prediction, paint))
        wrong_values = app.post("/api/review/cases/BraTS20_Synthetic_001/correction",
                                content=_painted(prediction, lambda d: d.__setitem__((0, 0, 0), 3)))
        wrong_grid = app.post("/api/review/cases/BraTS20_Synthetic_001/correction",
                              content=nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)).to_bytes())
        nonsense = app.post("/api/review/cases/BraTS20_Synthetic_001/correction", content=b"\x1f\x8bnot gzip")
    assert saved.status_code == 200, saved.text
    spacing = np.prod(nib.load(prediction).header.get_zooms()[:3])
    assert saved.json() == {"corrected": "corrected/BraTS20_Synthetic_001.nii.gz",
                            "volumes_ml": {"WT": 40 * spacing / 1000, "TC": 0.0, "ET": 0.0}}
    assert prediction.read_bytes() == before  # the prediction is never overwritten
    corrected = nib.load(predictions / "corrected" / "BraTS20_Synthetic_001.nii.gz")
    assert np.array_equal(corrected.affine, nib.load(prediction).affine)
    assert np.count_nonzero(np.asarray(corrected.dataobj) == 2) == 40 and corrected.get_data_dtype() == np.uint8
    row = read_qc(predictions / "qc.csv")["BraTS20_Synthetic_001"]
    assert (row.verdict, row.comment, row.reviewer, row.corrected) == \
        ("fail", "too big", "Dr. X", "corrected/BraTS20_Synthetic_001.nii.gz")
    assert row.corrected_volumes_ml == f"WT={40 * spacing / 1000:.3f};TC=0.000;ET=0.000"
    assert wrong_values.status_code == 422 and "label values [3.0]" in wrong_values.json()["detail"]
    assert wrong_grid.status_code == 422 and "is not the prediction's" in wrong_grid.json()["detail"]
    assert nonsense.status_code == 422 and "\n" not in nonsense.json()["detail"]
