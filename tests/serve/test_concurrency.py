"""Two jobs at once on each CPU backend: both outputs equal single runs (the Backend thread-safety rule).

A backend's ``run`` may not be called from two threads at once (OpenVINO reuses one infer request), so the
web app opens one runner per job slot; this test runs two uploads' jobs side by side on the app's own queue
and compares each segmentation, byte for byte, with ``run_batch`` on the same case alone.
"""

from __future__ import annotations

import shutil
import time

import pytest
from serving import client  # noqa: F401  (skips the module without the serve extra)

from bratsx.cases import discover_cases
from bratsx.runtime import ModelSpec, RunnerSpec, SegmentOptions, run_batch
from bratsx.runtime.infer import output_path
from bratsx.serve.job import job_output
from bratsx.serve.jobs import Job, JobState, new_job_folder
from bratsx.serve.settings import ServeSettings
from bratsx.serve.state import AppState
from bratsx.synth import write_synthetic_dataset


def _wait(state: AppState, jobs: list[Job], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while any(job.state in (JobState.QUEUED, JobState.RUNNING) for job in jobs):
        if time.monotonic() > deadline:
            raise TimeoutError("jobs still running")
        time.sleep(0.02)


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_two_jobs_at_once_write_what_single_runs_write(backend, model_folder, tmp_path):
    if backend == "openvino":
        pytest.importorskip("openvino")
    cases = write_synthetic_dataset(tmp_path / "cases", cases=2, shape=(32, 32, 24), seed=11)
    with RunnerSpec(ModelSpec(paths=(model_folder,), backend=backend)).open() as runner:
        single = run_batch(discover_cases(tmp_path / "cases"), runner, tmp_path / "single").records
    assert [r.status for r in single] == ["ok", "ok"]

    state = AppState.open(ServeSettings(model=model_folder, backend=backend, jobs_per_model=2, threads=2,
                                        data_dir=tmp_path / "data"))
    try:
        runners = state.model.runners
        assert len(runners) == 2 and runners[0].backends[0] is not runners[1].backends[0]  # one model per slot
        jobs = []
        for folder in cases:
            job_id, job_folder = new_job_folder(state.data_dir)
            shutil.copytree(folder, job_folder / "case")
            [case] = discover_cases(job_folder / "case")
            jobs.append(Job(job_id, job_folder, case, SegmentOptions(), {}))
        state.start()
        for job in jobs:
            state.queue.submit(job)
        _wait(state, jobs)
    finally:
        state.close()
    assert [job.state for job in jobs] == [JobState.DONE] * 2, [job.error for job in jobs]
    first, second = jobs
    assert first.started < second.finished and second.started < first.finished  # they ran at the same time
    for job, record in zip(jobs, single):
        served = output_path(job_output(job.folder), job.case.case_id).read_bytes()
        assert served == output_path(tmp_path / "single", record.case_id).read_bytes(), job.case.case_id
        assert job.result["volumes_ml"] == record.volumes_ml
