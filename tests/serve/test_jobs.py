import os
import threading
import time

import pytest

from bratsx.cases import Case, Layout
from bratsx.errors import CaseError
from bratsx.runtime.segment import SegmentOptions
from bratsx.serve.jobs import Job, JobQueue, new_job_folder
from bratsx.serve.state import remove_stale_jobs


def _job(data_dir, case_id="c"):
    job_id, folder = new_job_folder(data_dir)
    return Job(job_id, folder, Case(case_id, Layout.PLAIN, folder, {}), SegmentOptions(), {})


def _wait(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_jobs_run_one_at_a_time_in_order_and_say_how_many_are_ahead(tmp_path):
    release, order = threading.Event(), []

    def run(job, progress):
        order.append(job.case.case_id)
        progress("inference", 1, 4)
        release.wait(10)
        return {"case": job.case.case_id}

    queue = JobQueue(run, workers=1, expire_seconds=3600)
    queue.start()
    try:
        first, second, third = (_job(tmp_path, name) for name in ("a", "b", "c"))
        for job in (first, second, third):
            queue.submit(job)
        _wait(lambda: queue.describe(first.id)["state"] == "running")
        assert queue.describe(first.id)["tiles_done"] == 1 and queue.describe(first.id)["position"] is None
        assert [queue.describe(j.id)["position"] for j in (second, third)] == [1, 2]
        assert queue.describe(second.id)["state"] == "queued"
        release.set()
        _wait(lambda: queue.describe(third.id)["state"] == "done")
        assert order == ["a", "b", "c"] and queue.describe(third.id)["result"] == {"case": "c"}
    finally:
        release.set()
        queue.stop()


def test_a_failing_job_fails_alone_with_its_message_and_the_next_one_runs(tmp_path):
    def run(job, progress):
        if job.case.case_id == "bad":
            raise CaseError("bad", "T1 has 12 NaN or infinite voxels", "t1.nii.gz")
        if job.case.case_id == "crash":
            raise ZeroDivisionError("division by zero")
        return {}

    queue = JobQueue(run, workers=1, expire_seconds=3600)
    queue.start()
    try:
        jobs = [_job(tmp_path, name) for name in ("bad", "crash", "good")]
        for job in jobs:
            queue.submit(job)
        _wait(lambda: queue.describe(jobs[2].id)["state"] == "done")
        described = [queue.describe(j.id) for j in jobs]
        assert [d["state"] for d in described] == ["failed", "failed", "done"]
        assert described[0]["error"] == "case bad, file t1.nii.gz: T1 has 12 NaN or infinite voxels"
        assert described[1]["error"] == "case crash: ZeroDivisionError: division by zero"
    finally:
        queue.stop()


def test_finished_jobs_expire_and_their_folders_are_deleted(tmp_path):
    queue = JobQueue(lambda job, progress: {}, workers=1, expire_seconds=60)
    queue.start()
    try:
        job = _job(tmp_path)
        (job.folder / "upload.nii.gz").write_bytes(b"x")
        queue.submit(job)
        _wait(lambda: queue.describe(job.id)["state"] == "done")
        assert queue.expire(now=time.time() + 30) == []
        assert queue.expire(now=time.time() + 61) == [job.id]
        assert not job.folder.exists()
        with pytest.raises(KeyError):
            queue.describe(job.id)
    finally:
        queue.stop()


def test_a_restarted_server_removes_only_old_job_folders(tmp_path):
    old, fresh = _job(tmp_path).folder, _job(tmp_path).folder
    mine = tmp_path / "job-notours"
    mine.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    os.utime(mine, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_jobs(tmp_path, 3600) == [old]
    assert fresh.exists() and mine.exists()
