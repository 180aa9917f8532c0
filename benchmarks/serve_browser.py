"""The web app measured through a real browser, against ``bratsx infer`` on the same case and model.

1. ``bratsx serve`` is started as its own process (so its memory is the server's alone): its resident
   memory is read once the model is loaded, and its peak after the jobs.
2. Headless Chromium (the system's, driven by Playwright) uploads the case's four files and waits
   until the result is shown in the viewer: the page's own clock gives the time from the click to the
   result being ready (the job's result received) and to it being drawn by NiiVue (headless Chromium
   draws WebGL in software, SwiftShader, so that last step is far slower than on a GPU).
3. ``bratsx infer`` then segments the same case with the same model and backend, as a separate process
   (the server idle meanwhile): its whole run (process start and model loading included) and its own
   in-process wall time.
4. Two pages upload the case at once: the second must wait (queued, one job ahead) until the first
   is done, then run; both must finish.
5. The segmentation downloaded through the page is compared voxel for voxel with infer's.

    python benchmarks/serve_browser.py MODEL CASE_FOLDER [--backend ort] [--json OUT] [--screenshot PNG]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _memory_mb(pid: int) -> dict[str, float]:
    """Resident memory now and at its peak (VmRSS, VmHWM) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def _start_server(model: Path, backend: str, data_dir: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "bratsx", "serve", "--model", str(model), "--backend", backend,
                                "--port", str(_free_port()), "--data-dir", str(data_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "COLUMNS": "300"})
    for line in process.stdout:
        found = re.search(r"open (http://\S+)", line)
        if found:
            return process, found.group(1)
    raise RuntimeError("bratsx serve exited before printing its address")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(address: str, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(address + "api/info", timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _open(browser, address: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page.goto(address)
    page.wait_for_selector("body[data-ready=true]")
    return page


def _upload(page, files: list[str]) -> None:
    page.set_input_files("#files", files)
    while page.evaluate("document.querySelectorAll('#file-roles select.role').length") != len(files):
        time.sleep(0.05)


def _one_case(browser, address: str, files: list[str], download: Path, screenshot: Path | None) -> dict:
    page = _open(browser, address)
    _upload(page, files)
    started = time.perf_counter()
    page.click("#submit", no_wait_after=True)
    page.wait_for_selector("body[data-state=shown]", timeout=1_800_000)
    seconds = time.perf_counter() - started
    job = page.evaluate("window.bratsx.job")
    timings = page.evaluate("window.bratsx.timings")
    with page.expect_download() as downloaded:
        page.click("#download-segmentation")
    downloaded.value.save_as(download)
    if screenshot is not None:
        time.sleep(1.0)
        page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return {"click_to_shown_s": seconds, "submit_to_result_s": (timings["done"] - timings["submitted"]) / 1000,
            "submit_to_shown_s": (timings["shown"] - timings["submitted"]) / 1000,
            "upload_s": (timings["uploaded"] - timings["submitted"]) / 1000,
            "done_to_shown_s": (timings["shown"] - timings["done"]) / 1000, "job_running_s": job["seconds_running"],
            "job_seconds": job["result"]["seconds"]}


def _two_at_once(browser, address: str, files: list[str]) -> dict:
    pages = [_open(browser, address) for _ in range(2)]
    for page in pages:
        _upload(page, files)
    for page in pages:
        page.click("#submit", no_wait_after=True)
    seen: list[tuple[float, str, str]] = []
    started = time.perf_counter()
    while True:
        jobs = [page.evaluate("window.bratsx.job") for page in pages]
        states = [job["state"] if job else "uploading" for job in jobs]
        positions = [job["position"] if job else None for job in jobs]
        seen.append((round(time.perf_counter() - started, 2), str(states), str(positions)))
        if all(s == "done" or s == "failed" for s in states):
            break
        time.sleep(0.2)
    for page in pages:
        page.wait_for_selector("body[data-state=shown]", timeout=600_000)
    queued_behind = any("'running', 'queued'" in s and "None, 1" in p for _, s, p in seen) or \
        any("'queued', 'running'" in s and "1, None" in p for _, s, p in seen)
    both_running = any("'running', 'running'" in s for _, s, _ in seen)
    return {"states": [job["state"] for job in jobs], "waited_s": [job["seconds_waiting"] for job in jobs],
            "ran_s": [job["seconds_running"] for job in jobs], "one_queued_behind_the_other": queued_behind,
            "ever_both_running": both_running, "wall_s": time.perf_counter() - started}


def _infer(options: argparse.Namespace, out: Path) -> dict:
    """``bratsx infer`` on the case as its own process: the whole run, and its own in-process wall time."""
    started = time.perf_counter()
    infer = subprocess.run([sys.executable, "-m", "bratsx", "infer", str(options.case), "--model", str(options.model),
                            "--backend", options.backend, "--out", str(out)], capture_output=True, text=True)
    process_s = time.perf_counter() - started
    if infer.returncode != 0:
        sys.exit(infer.stdout + infer.stderr)
    summary = json.loads((out / "summary.json").read_text())
    return {"process_s": process_s, "wall_s": summary["wall_seconds"],
            "seconds_per_stage": summary.get("mean_seconds_per_stage")}


def _report(result: dict, phase: str, value: object) -> None:
    """Keep a phase's result and print it at once (a run on a busy machine can take long)."""
    result[phase] = value
    print(json.dumps({phase: value}), file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("case", type=Path)
    parser.add_argument("--backend", default="ort")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--screenshot", type=Path)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bratsx-serve-bench-"))
    files = sorted(str(p) for p in options.case.iterdir() if p.name.endswith((".nii", ".nii.gz")) and "seg" not in
                   p.name)
    result: dict = {"date": datetime.date.today().isoformat(), "model": str(options.model), "case": str(options.case),
                    "backend": options.backend, "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    server, address = _start_server(options.model, options.backend, work / "data")
    try:
        _wait_ready(address)
        _report(result, "server_memory_mb_model_loaded", _memory_mb(server.pid))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            _report(result, "serve", _one_case(browser, address, files, work / "served.nii.gz", options.screenshot))
            _report(result, "infer", _infer(options, work / "infer"))  # right after, on the same machine load
            _report(result, "two_uploads_at_once", _two_at_once(browser, address, files))
            browser.close()
        _report(result, "server_memory_mb_after_jobs", _memory_mb(server.pid))
    finally:
        server.terminate()
        server.wait(30)

    served = nib.load(work / "served.nii.gz")
    inferred = nib.load(next((work / "infer").glob("*.nii.gz")))
    result["download_identical_to_infer"] = bool(np.array_equal(np.asarray(served.dataobj),
                                                                np.asarray(inferred.dataobj))
                                                 and np.array_equal(served.affine, inferred.affine))
    infer_wall, single = result["infer"]["wall_s"], result["serve"]
    result["result_ready_vs_infer_wall"] = single["submit_to_result_s"] / infer_wall
    result["result_shown_vs_infer_wall"] = single["submit_to_shown_s"] / infer_wall
    result["result_shown_vs_infer_process"] = single["submit_to_shown_s"] / result["infer"]["process_s"]
    result["load_average_at_end"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    print(text)
    if options.json:
        options.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
