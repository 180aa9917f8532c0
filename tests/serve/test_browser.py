"""End to end in a real browser: Debian's headless Chromium driven by Playwright (no browser download).

Skipped where /usr/bin/chromium is absent (``.ci/run`` installs it).
"""

import io
import re
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from serving import HOSTILE_ID, case_files, live_server
from typer.testing import CliRunner

from bratsx.cli import app as cli
from bratsx.report.qc import read_qc
from bratsx.synth import write_synthetic_dataset

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: How far a label colour stands out of the grey background once blended (60% opacity: 153 at full colour).
_CHROMA = 80
#: Longest wait for the page (seconds).
_TIMEOUT_S = 180
#: The label toggles' tissue of each label name.
_TISSUES = {"NCR": "necrotic_core", "ED": "edema", "ET": "enhancing"}


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip("no /usr/bin/chromium: the browser tests need Debian's chromium (apt-get install chromium "
                    "chromium-driver; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (pip install "
                                                                 "playwright; its own browser download is not used)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def _open(browser, address):
    """A page on the app, collecting script errors (the page's CSP forbids Playwright's eval-based waits)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page.set_default_timeout(_TIMEOUT_S * 1000)  # WebGL runs in software here, on a shared CPU
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(address)
    page.wait_for_selector("body[data-ready=true]")
    return page


def _wait(page, script, timeout=_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while not page.evaluate(script):
        assert time.monotonic() < deadline, f"timed out waiting for {script}"
        time.sleep(0.05)


def _label_pixels(page) -> dict[str, int]:
    """Pixels of the viewer's canvas in each label colour (red NCR, green ED, yellow ET, blended over grey)."""
    from PIL import Image

    time.sleep(0.3)  # NiiVue draws on the next animation frame
    rgb = np.asarray(Image.open(io.BytesIO(page.locator("#gl").screenshot())).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return {"NCR": int(np.count_nonzero((r - np.maximum(g, b) > _CHROMA) & (abs(g - b) < 40))),
            "ED": int(np.count_nonzero((g - np.maximum(r, b) > _CHROMA) & (abs(r - b) < 40))),
            "ET": int(np.count_nonzero((np.minimum(r, g) - b > _CHROMA) & (abs(r - g) < 40)))}


def _toggle(page, tissue):
    page.click(f"#label-toggles input[data-tissue={tissue}]", no_wait_after=True)


def test_upload_view_and_download_in_a_real_browser(browser, tmp_path, model_folder):
    case = write_synthetic_dataset(tmp_path / "cases", cases=1, shape=(64, 64, 48), seed=7)[0]
    files = [str(p) for p in case_files(case)]
    with live_server(model=model_folder, backend="ort") as address:
        page = _open(browser, address)
        page.set_input_files("#files", files[:3])  # T2 missing: the page shows the one-line message
        page.click("#submit", no_wait_after=True)
        page.wait_for_selector("body[data-state=failed]")
        assert page.text_content("#upload-error") == "missing t2: upload FLAIR, T1, T1ce and T2 (or one .zip of " \
                                                     "the case folder)"

        page.set_input_files("#files", files)
        _wait(page, "document.querySelectorAll('#file-roles select.role').length === 4")
        assert [s.input_value() for s in page.query_selector_all("#file-roles select.role")] == \
            ["flair", "t1", "t1ce", "t2"]
        page.click("#submit", no_wait_after=True)
        page.wait_for_selector("body[data-state=shown]")
        assert page.text_content("#result-title") == case.name

        shown = _label_pixels(page)
        assert sum(shown.values()) > 500, shown
        for tissue in _TISSUES.values():
            _toggle(page, tissue)
        hidden = _label_pixels(page)
        assert sum(hidden.values()) < 0.01 * sum(shown.values()), (shown, hidden)
        kept = max(shown, key=shown.get)  # the label with most pixels, shown alone
        _toggle(page, _TISSUES[kept])
        alone = _label_pixels(page)
        assert alone[kept] > 0.5 * shown[kept]
        assert sum(alone.values()) - alone[kept] < 0.05 * sum(shown.values()), (shown, alone)
        page.evaluate("(() => { const s = document.getElementById('opacity'); s.value = '0';"
                      " s.dispatchEvent(new Event('input')); })()")
        assert sum(_label_pixels(page).values()) < 0.01 * sum(shown.values())

        box = page.locator("#gl").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.25)
        assert re.fullmatch(r"voxel \d+, \d+, \d+ · T1ce -?[\d.]+ · label: (background|NCR|ED|ET)",
                            page.text_content("#location")), page.text_content("#location")

        page.select_option("#background", "flair")
        page.wait_for_selector("body[data-viewer=shown]")
        with page.expect_download() as download:
            page.click("#download-segmentation")
        assert download.value.suggested_filename == f"{case.name}.nii.gz"
        download.value.save_as(tmp_path / "served.nii.gz")
        assert page.errors == []

    result = CliRunner().invoke(cli, ["infer", str(tmp_path / "cases"), "--model", str(model_folder), "--backend",
                                      "ort", "--out", str(tmp_path / "infer")])
    assert result.exit_code == 0, result.output
    served, inferred = nib.load(tmp_path / "served.nii.gz"), nib.load(tmp_path / "infer" / f"{case.name}.nii.gz")
    assert np.array_equal(np.asarray(served.dataobj), np.asarray(inferred.dataobj))
    assert np.array_equal(served.affine, inferred.affine) and served.shape == inferred.shape


def test_review_a_batch_and_fail_a_case_in_a_real_browser(browser, tmp_path, batch):
    """Review with case folders that are links (defect 1), by keys, with a reviewer's name, a progress count, the
    Dice columns and the reference overlaid."""
    cases, original = batch
    predictions = tmp_path / "predictions"
    shutil.copytree(original, predictions)
    (predictions / "qc.csv").unlink(missing_ok=True)  # verdicts other tests gave the shared batch
    linked = tmp_path / "cases"
    linked.mkdir()
    for folder in cases.iterdir():
        (linked / folder.name).symlink_to(folder, target_is_directory=True)
    token = "s3cret-s3cret-s3cret"
    with live_server(cases_dir=linked, predictions_dir=predictions, token=token) as address:
        stranger = browser.new_page()
        stranger.goto(address)  # no token: the page loads, the data does not
        stranger.wait_for_selector("#server-error:not([hidden])")
        assert stranger.text_content("#server-error").startswith("this bratsx server needs its token")
        stranger.close()
        page = _open(browser, f"{address}/#token={token}")  # the printed address hands the token to the page
        assert token not in page.url  # kept in this origin's storage, not in the address bar
        rows = page.locator("#review-cases tbody tr")
        assert rows.count() == 2 and page.text_content("#review-progress") == "0 of 2 reviewed"
        page.fill("#reviewer", "Dr. Example")
        page.dispatch_event("#reviewer", "change")
        hostile = rows.filter(has_text=HOSTILE_ID)
        assert hostile.locator("td").first.text_content() == HOSTILE_ID  # shown as text, never parsed as HTML
        hostile.click(no_wait_after=True)
        page.wait_for_selector("body[data-viewer=shown]")
        assert page.is_hidden("#viewer-error") and page.text_content("#review-error") == ""
        assert _label_pixels(page) != {"NCR": 0, "ED": 0, "ET": 0}
        page.fill("#review-comment", "edema missed <b>here</b>, slice 12")
        page.click("#verdict-fail", no_wait_after=True)
        _wait(page, "document.getElementById('review-saved').textContent.startsWith('saved: fail')")
        page.locator("#gl").click()  # keys act outside the comment box
        page.keyboard.press("p" if rows.nth(1).get_attribute("data-case-id") == HOSTILE_ID else "n")
        _wait(page, "document.getElementById('review-title').textContent === 'BraTS20_Synthetic_001'")
        page.wait_for_selector("body[data-viewer=shown]")
        assert page.is_visible("#overlay-choice")  # this case has a reference
        dice = page.locator("#review-cases tbody tr[data-case-id=BraTS20_Synthetic_001] td").nth(3).text_content()
        assert re.fullmatch(r"\d\.\d{3}", dice), dice
        page.select_option("#overlay-source", "reference")
        page.wait_for_selector("body[data-viewer=shown]")
        assert _label_pixels(page) != {"NCR": 0, "ED": 0, "ET": 0}
        page.keyboard.press("1")
        _wait(page, "document.getElementById('review-progress').textContent === '2 of 2 reviewed'")

        page.select_option("#overlay-source", "seg")  # correction: paint enhancing tumour across the axial slice
        page.wait_for_selector("body[data-viewer=shown]")
        page.select_option("#view", "axial")
        page.click("#correct-start")
        page.wait_for_selector("body[data-correcting=true]")
        page.select_option("#pen", "4")
        box = page.locator("#gl").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.5, steps=12)
        page.mouse.up()
        page.click("#correct-save")
        _wait(page, "document.getElementById('correct-saved').textContent.startsWith('saved as corrected/')")
        page.reload()
        page.wait_for_selector("body[data-viewer=shown]")  # the case's address survives a reload
        assert page.text_content("#review-title") == "BraTS20_Synthetic_001"
        assert page.evaluate("window.pwned === undefined") and page.errors == []
    name = "BraTS20_Synthetic_001.nii.gz"
    assert (predictions / name).read_bytes() == (original / name).read_bytes()  # never overwritten
    painted = np.asarray(nib.load(predictions / "corrected" / name).dataobj)
    predicted = np.asarray(nib.load(original / name).dataobj)
    assert painted.shape == predicted.shape and np.count_nonzero(painted == 4) > np.count_nonzero(predicted == 4) + 5
    verdicts = read_qc(predictions / "qc.csv")
    assert verdicts["BraTS20_Synthetic_001"].corrected == f"corrected/{name}"
    assert (verdicts[HOSTILE_ID].verdict, verdicts[HOSTILE_ID].comment) == \
        ("fail", "edema missed <b>here</b>, slice 12")
    assert (verdicts["BraTS20_Synthetic_001"].verdict, verdicts["BraTS20_Synthetic_001"].reviewer) == \
        ("pass", "Dr. Example")

def _anterior_bright_case(tmp_path) -> Path:
    """A synthetic case under names that say no sequence, its T1ce bright in front (world y above the middle)."""
    case = write_synthetic_dataset(tmp_path / "source", cases=1, shape=(48, 48, 32), seed=9)[0]
    folder = tmp_path / "upload"
    folder.mkdir()
    for index, path in enumerate(case_files(case)):
        image = nib.load(path)
        data = np.asarray(image.dataobj, dtype=np.float32)
        if "t1ce" in path.name:
            world_y = nib.affines.apply_affine(image.affine, np.indices(data.shape).reshape(3, -1).T)[:, 1]
            front = (world_y > np.median(world_y)).reshape(data.shape)
            data = np.where(front, data, 0.25 * data)
        nib.save(nib.Nifti1Image(data, image.affine), folder / f"scan{index}.nii.gz")
    return folder


def _readout(page) -> tuple[tuple[int, ...], str, float, str]:
    text = page.text_content("#location")
    match = re.fullmatch(r"voxel (\d+), (\d+), (\d+) · (\S+) (-?[\d.]+) · label: (\S+)", text)
    assert match, text
    return tuple(int(v) for v in match.groups()[:3]), match[4], float(match[5]), match[6]


def _brightness(page) -> np.ndarray:
    from PIL import Image

    time.sleep(0.3)
    return np.asarray(Image.open(io.BytesIO(page.locator("#gl").screenshot())).convert("L")).astype(float)


def test_a_new_users_session_in_a_real_browser(browser, tmp_path, model_folder):
    """Defects 2, 3, 8, 9 and 10 of issue 26, pushed progress, the tumour focus and a link that survives a reload."""
    from bratsx.serve.app import serving
    from bratsx.serve.settings import ServeSettings
    from bratsx.serve.state import AppState

    folder = _anterior_bright_case(tmp_path)
    files = sorted(folder.iterdir())
    state = AppState.open(ServeSettings(model=model_folder, backend="ort"))
    with serving(state) as address:
        page = _open(browser, address)
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.set_input_files("#files", [str(p) for p in files])
        _wait(page, "document.querySelectorAll('#file-roles select.role').length === 4")
        assert page.is_disabled("#submit")  # defect 10: no sequence chosen, nothing can be submitted
        assert page.text_content("#roles-note").startswith("choose the sequence of scan0.nii.gz, scan1.nii.gz")
        for select, role in zip(page.query_selector_all("#file-roles select.role"), ["flair", "t1", "t1ce", "t2"]):
            select.select_option(role)
        assert page.is_enabled("#submit") and page.is_hidden("#roles-note")
        page.click("#submit", no_wait_after=True)
        page.wait_for_selector("body[data-state=shown]")
        job_id = page.evaluate("window.bratsx.job.id")
        # the result reached the page as pushed events (a tiny model's job may end before the stream opens, and
        # then "done" is the one event) ...
        assert page.evaluate("window.bratsx.events") >= 1
        assert not [u for u in requests if u.endswith(f"/api/jobs/{job_id}")]  # ... never polled
        assert page.url.endswith(f"?job={job_id}")

        voxel, sequence, _, label = _readout(page)
        assert sequence == "T1ce" and label in ("NCR", "ED", "ET")  # opened on the tumour, not the volume centre
        page.select_option("#background", "flair")
        _wait(page, "document.body.dataset.viewer === 'shown'")
        after, sequence, value, _ = _readout(page)  # defect 9: the readout follows the background
        flair = np.asarray(nib.load(files[0]).dataobj)
        assert sequence == "FLAIR" and after == voxel and abs(value - float(flair[after])) < 0.06

        page.select_option("#background", "t1ce")
        _wait(page, "document.body.dataset.viewer === 'shown'")
        page.select_option("#view", "sagittal")
        page.evaluate("(() => { const s = document.getElementById('opacity'); s.value = '0';"
                      " s.dispatchEvent(new Event('input')); })()")
        grey = _brightness(page)
        columns = grey.mean(axis=0)
        half = len(columns) // 2
        assert columns[:half].sum() > 1.5 * columns[half:].sum()  # defect 8: anterior on the left, as the overlay
        page.fill("#window-max", str(0.05 * float(page.input_value("#window-max"))))
        page.dispatch_event("#window-max", "change")  # a narrow window: most of the head saturates to white
        assert _brightness(page).mean() > 1.5 * grey.mean()

        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.set_default_timeout(_TIMEOUT_S * 1000)
        phone.goto(f"{address}/?job={job_id}")  # the result's link survives a reload, here on a phone
        phone.wait_for_selector("body[data-state=shown]")
        assert phone.locator("#gl").bounding_box()["width"] > 300  # defect 3: was 0 px wide
        assert phone.locator("#jobs a").first.text_content() == "scan"  # the case list links the result
        phone.close()

        state.queue.expire(now=float("inf"))  # defect 2: an expired result
        page.select_option("#background", "t2")
        page.wait_for_selector("body[data-viewer=failed]")
        assert "expired" in page.text_content("#viewer-error")
        page.click("#download-segmentation")
        page.wait_for_selector("#download-error:not([hidden])")
        assert "expired" in page.text_content("#download-error") and page.url.startswith(address)
        assert page.errors == []
