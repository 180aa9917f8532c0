import http.client
import io
import math
import shutil
import time
import zipfile
from urllib.parse import urlsplit

import nibabel as nib
import numpy as np
import pytest
from serving import HOSTILE_ID, LOCAL, case_files, client, live_server, upload, wait_for_job

from bratsx.cases import discover_cases
from bratsx.errors import BratsxError
from bratsx.report.qc import read_qc
from bratsx.runtime import ModelSpec, RunnerSpec, run_batch
from bratsx.serve.settings import ServeSettings
from bratsx.synth import write_synthetic_dataset


def _infer(case_folder, model_folder, out):
    with RunnerSpec(ModelSpec(paths=(model_folder,), backend="ort")).open() as runner:
        run_batch(discover_cases(case_folder), runner, out)
    return out / f"{case_folder.name}.nii.gz"


def test_an_upload_is_segmented_as_infer_segments_it_and_offers_its_downloads(tmp_path, model_folder, small_case):
    with client(model=model_folder, backend="ort", data_dir=tmp_path / "data") as app:
        files = case_files(small_case, with_label=True)
        roles = [{"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2", "seg": "seg"}[p.name.split("_")[-1][:-7]]
                 for p in files]
        response = upload(app, files, roles)
        assert response.status_code == 201, response.text
        job = wait_for_job(app, response.json()["id"])
        assert job["state"] == "done", job["error"]
        result = job["result"]
        assert set(result["volumes_ml"]) == {"WT", "TC", "ET"} and "dice_WT" in result["metrics"]
        assert result["convention"] == "brats2020" and [label["value"] for label in result["labels"]] == [1, 2, 4]
        assert job["sequences"] == {"flair": None, "t1": None, "t1ce": None, "t2": None}
        seg = app.get(f"/api/jobs/{job['id']}/download/segmentation")
        assert seg.headers["content-disposition"] == f'attachment; filename="{small_case.name}.nii.gz"'
        assert app.get(f"/api/jobs/{job['id']}/download/result").json()["volumes_ml"] == result["volumes_ml"]
        overlay = app.get(f"/api/jobs/{job['id']}/download/overlay")
        assert overlay.headers["content-type"] == "image/png" and overlay.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert app.get(f"/api/jobs/{job['id']}/volumes/t1ce").content == (small_case / f"{small_case.name}_t1ce.nii.gz"
                                                                           ).read_bytes()
    (tmp_path / "seg.nii.gz").write_bytes(seg.content)
    served, inferred = nib.load(tmp_path / "seg.nii.gz"), nib.load(_infer(small_case, model_folder, tmp_path / "out"))
    assert np.array_equal(np.asarray(served.dataobj), np.asarray(inferred.dataobj))
    assert np.array_equal(served.affine, inferred.affine)


def test_a_zip_of_a_brats2023_case_folder_keeps_its_label_convention(tmp_path, model_folder):
    case = write_synthetic_dataset(tmp_path / "in", cases=1, shape=(32, 32, 24), layout="brats2023", seed=5)[0]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in case_files(case):
            archive.write(path, f"{case.name}/{path.name}")
    with client(model=model_folder, backend="ort") as app:
        response = app.post("/api/jobs", files=[("files", ("case.zip", buffer.getvalue()))])
        assert response.status_code == 201, response.text
        job = wait_for_job(app, response.json()["id"])
    assert job["state"] == "done" and job["case_id"] == case.name and job["inputs"] == {"zip": "case.zip"}
    assert job["result"]["convention"] == "brats2023"


def _two_case_zip(tmp_path):
    cases = write_synthetic_dataset(tmp_path / "two", cases=2, shape=(16, 16, 16))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for case in cases:
            for path in case_files(case):
                archive.write(path, f"{case.name}/{path.name}")
    return [("two.zip", buffer.getvalue())]


@pytest.mark.parametrize("kind, message", [
    ("three", "missing t2: upload FLAIR, T1, T1ce and T2"),
    ("text", "notes.txt: not a NIfTI file"),
    ("two cases", "the upload holds 2 cases"),
    ("not a zip", "case.zip: not a readable .zip file"),
])
def test_bad_uploads_answer_one_line_and_leave_no_job_folder(tmp_path, model_folder, small_case, kind, message):
    files = [(p.name, p.read_bytes()) for p in case_files(small_case)]
    uploads = {"three": files[:3], "text": [*files[:3], ("notes.txt", b"hello")], "two cases": _two_case_zip(tmp_path),
               "not a zip": [("case.zip", b"PK nonsense")]}[kind]
    with client(model=model_folder, backend="ort", data_dir=tmp_path / "data") as app:
        response = app.post("/api/jobs", files=[("files", upload) for upload in uploads])
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert message in detail and "\n" not in detail
    assert list((tmp_path / "data").iterdir()) == []


def test_a_case_the_loader_rejects_fails_alone_and_the_server_keeps_serving(tmp_path, model_folder, small_case):
    broken = tmp_path / "broken"
    shutil.copytree(small_case, broken)
    t1 = broken / f"{small_case.name}_t1.nii.gz"
    image = nib.load(t1)
    data = np.asarray(image.dataobj, dtype=np.float32)
    data[5, 5, 5] = np.nan
    nib.save(nib.Nifti1Image(data, image.affine), t1)
    with client(model=model_folder, backend="ort") as app:
        failed = wait_for_job(app, upload(app, case_files(broken)).json()["id"])
        good = wait_for_job(app, upload(app, case_files(small_case)).json()["id"])
        assert app.get(f"/api/jobs/{failed['id']}/download/segmentation").status_code == 409
    assert failed["state"] == "failed" and good["state"] == "done"
    assert failed["error"] == f"case {small_case.name}, file t1.nii.gz: T1 has 1 NaN or infinite voxels"


def test_uploads_over_the_limit_are_refused_whether_announced_or_streamed(tmp_path, model_folder, small_case):
    with client(model=model_folder, backend="ort", max_upload_mb=0.02, data_dir=tmp_path / "data") as app:
        announced = upload(app, case_files(small_case))

        def chunks():
            yield b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"flair.nii\"\r\n\r\n"
            for _ in range(40):
                yield b"\0" * 1024

        streamed = app.post("/api/jobs", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    for response in (announced, streamed):
        assert response.status_code == 413
        assert response.json()["detail"].startswith("upload larger than this server's limit of 0 MB")
    assert list((tmp_path / "data").iterdir()) == []


def test_an_expired_job_answers_404_and_its_folder_is_deleted(tmp_path, model_folder, small_case):
    with client(model=model_folder, backend="ort", data_dir=tmp_path / "data") as app:
        job = wait_for_job(app, upload(app, case_files(small_case)).json()["id"])
        app.app.state.bratsx.queue.expire(now=time.time() + 3601)
        assert app.get(f"/api/jobs/{job['id']}").status_code == 404
        assert app.get(f"/api/jobs/{job['id']}/download/segmentation").status_code == 404
    assert list((tmp_path / "data").iterdir()) == []


_TRAVERSALS = [
    "/api/review/cases/{dots}etc{slash}passwd/volumes/flair",
    "/api/review/cases/{case}/volumes/{dots}{dots}{dots}etc{slash}passwd",
    "/api/review/cases/{case}/volumes/{dots}{case}{slash}seg",
    "/static/{dots}{dots}serve{slash}settings.py",
    "/static/niivue/{dots}{dots}{dots}cli{slash}serve.py",
    "/api/jobs/{dots}{dots}/volumes/flair",
]


@pytest.mark.parametrize("path", _TRAVERSALS)
@pytest.mark.parametrize("encoding", ["encoded", "double-encoded"])
def test_encoded_path_traversal_is_refused(batch, path, encoding):
    cases, predictions = batch
    dots, slash = {"encoded": ("..%2F", "%2F"), "double-encoded": ("%2E%2E%252F", "%252F")}[encoding]
    with client(cases_dir=cases, predictions_dir=predictions) as app:
        response = app.get(path.format(dots=dots, slash=slash, case="BraTS20_Synthetic_001"))
    assert response.status_code == 404 and b"root:" not in response.content and b"import" not in response.content


def test_plain_path_traversal_is_refused_on_the_wire(batch):
    cases, predictions = batch
    with live_server(cases_dir=cases, predictions_dir=predictions) as address:
        where = urlsplit(address)
        for path in _TRAVERSALS:
            connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
            connection.request("GET", path.format(dots="../", slash="/", case="BraTS20_Synthetic_001"))
            response = connection.getresponse()
            body = response.read()
            connection.close()
            assert response.status == 404, path
            assert b"root:" not in body and b"import" not in body


def test_review_serves_no_file_that_a_link_takes_outside_its_folders(tmp_path, batch):
    cases, predictions = batch
    linked = tmp_path / "predictions"
    shutil.copytree(predictions, linked)
    outside = tmp_path / "secret.nii.gz"
    shutil.copy(linked / "BraTS20_Synthetic_001.nii.gz", outside)
    (linked / "BraTS20_Synthetic_001.nii.gz").unlink()
    (linked / "BraTS20_Synthetic_001.nii.gz").symlink_to(outside)
    with client(cases_dir=cases, predictions_dir=linked) as app:
        assert app.get("/api/review/cases/BraTS20_Synthetic_001/volumes/seg").status_code == 404
        assert app.get("/api/review/cases/BraTS20_Synthetic_001/volumes/flair").status_code == 200


TOKEN = "s3cret-s3cret-s3cret"


def test_another_address_needs_a_token_and_every_request_is_checked(batch):
    cases, predictions = batch
    with pytest.raises(BratsxError, match="give --token"):
        ServeSettings(host="0.0.0.0", cases_dir=cases, predictions_dir=predictions)
    with pytest.raises(BratsxError, match="at least 16 characters"):
        ServeSettings(host="0.0.0.0", token="short", cases_dir=cases, predictions_dir=predictions)
    with client(host="0.0.0.0", token=TOKEN, cases_dir=cases, predictions_dir=predictions) as app:
        for path in ("/api/info", "/api/review/cases", f"/api/review/cases/{HOSTILE_ID}/volumes/flair"):
            assert app.get(path).status_code == 401
        for path in ("/", "/static/app.js"):  # the app's own code, no data: the page must load to send the token
            assert app.get(path).status_code == 200
        assert app.post("/", headers={"Origin": LOCAL}).status_code == 401
        assert app.get("/api/info", headers={"X-Bratsx-Token": "wrong"}).status_code == 401
        assert app.get("/api/info", headers={"X-Bratsx-Token": TOKEN}).status_code == 200
        assert app.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert app.get("/?token=wrong", follow_redirects=False).status_code == 401
        login = app.get(f"/?token={TOKEN}", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == f"/#token={TOKEN}"


def test_the_token_never_goes_into_a_cookie_that_other_ports_of_the_host_would_receive(batch):
    """Defect 5: cookies are not bound to a port, so no cookie may carry the token; a cookie holding it opens
    nothing either (only the header, which the page sends from its origin's own storage, does)."""
    cases, predictions = batch
    with client(host="0.0.0.0", token=TOKEN, cases_dir=cases, predictions_dir=predictions) as app:
        answers = [app.get(f"/?token={TOKEN}", follow_redirects=False), app.get("/"), app.get("/static/app.js"),
                   app.get("/api/info", headers={"X-Bratsx-Token": TOKEN})]
        assert all("set-cookie" not in answer.headers for answer in answers)
        assert app.get("/api/info", headers={"Cookie": f"bratsx_token={TOKEN}"}).status_code == 401


@pytest.mark.parametrize("host", ["127.0.0.2", "127.1.2.3", "localhost", "[::1]"])
def test_every_loopback_address_is_served_without_a_token(batch, host):
    """Defect 4: --host 127.0.0.2 made no token (a loopback address) yet refused every request to it."""
    cases, predictions = batch
    with client(host=host.strip("[]"), cases_dir=cases, predictions_dir=predictions) as app:
        assert app.get("/api/info", headers={"Host": f"{host}:8000"}).status_code == 200
        assert app.get("/api/info", headers={"Host": "127.0.0.2.attacker.example:8000"}).status_code == 403


def test_other_host_names_and_cross_origin_writes_are_refused(batch):
    cases, predictions = batch
    with client(cases_dir=cases, predictions_dir=predictions) as app:
        assert app.get("/api/info", headers={"Host": "attacker.example:8000"}).status_code == 403
        assert app.get("/api/info", headers={"Host": "localhost:8000"}).status_code == 200
        verdict = {"verdict": "pass", "comment": ""}
        cross = app.post("/api/review/cases/BraTS20_Synthetic_001/verdict", json=verdict,
                         headers={"Origin": "http://attacker.example"})
        same = app.post("/api/review/cases/BraTS20_Synthetic_001/verdict", json=verdict, headers={"Origin": LOCAL})
    assert cross.status_code == 403 and same.status_code == 200


def test_verdicts_go_to_qc_csv_atomically_and_survive_a_restart(tmp_path, batch):
    cases, original = batch
    predictions = tmp_path / "predictions"
    shutil.copytree(original, predictions)
    with client(cases_dir=cases, predictions_dir=predictions) as app:
        listed = app.get("/api/review/cases").json()
        assert "BraTS20_Synthetic_001" in [c["case_id"] for c in listed] and len(listed) == 2
        assert app.post("/api/review/cases/BraTS20_Synthetic_001/verdict",
                        json={"verdict": "fail", "comment": "=HYPERLINK(\"x\")"}).status_code == 200
        assert app.post("/api/review/cases/BraTS20_Synthetic_001/verdict", json={"verdict": "maybe"}).status_code == 422
        assert app.post("/api/review/cases/nobody/verdict", json={"verdict": "pass"}).status_code == 404
    assert "'=HYPERLINK" in (predictions / "qc.csv").read_text()
    assert read_qc(predictions / "qc.csv")["BraTS20_Synthetic_001"].comment == "=HYPERLINK(\"x\")"
    assert [p.name for p in predictions.iterdir() if p.name.startswith(".")] == []
    with client(cases_dir=cases, predictions_dir=predictions) as app:
        again = {c["case_id"]: c["verdict"] for c in app.get("/api/review/cases").json()}
    assert again["BraTS20_Synthetic_001"]["verdict"] == "fail"


def test_review_lists_cases_flagged_as_the_report_flags_them_in_json_only(batch):
    cases, predictions = batch
    with client(cases_dir=cases, predictions_dir=predictions) as app:
        listed = app.get("/api/review/cases")
        detail = app.get(f"/api/review/cases/{HOSTILE_ID}")
        page = app.get("/")
    assert listed.headers["content-type"] == "application/json" and HOSTILE_ID in [c["case_id"] for c in listed.json()]
    assert all(isinstance(c["flags"], list) for c in listed.json())
    assert detail.json()["labels"][0]["color"] == [255, 0, 0]
    assert "onerror" not in page.text and "default-src 'self'" in page.headers["content-security-policy"]
    assert all(math.isfinite(v) for c in listed.json() for v in c["volumes_ml"].values())


def test_the_page_and_the_vendored_niivue_are_served(batch):
    cases, predictions = batch
    with client(cases_dir=cases, predictions_dir=predictions) as app:
        page = app.get("/")
        niivue = app.get("/static/niivue/niivue.umd.js")
        info = app.get("/api/info").json()
    assert page.status_code == 200 and '<script src="/static/niivue/niivue.umd.js">' in page.text
    assert niivue.status_code == 200 and len(niivue.content) > 1_000_000
    assert info["review"] and not info["segment"]
