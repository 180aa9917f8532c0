"""Soak: 50 uploads in a row leave the server's memory near its idle level and no file behind (slow)."""

import gc
import gzip
import resource
import tempfile
import time

import pytest
from serving import case_files, client, upload, wait_for_job

from bratsx.synth import write_synthetic_dataset

pytestmark = pytest.mark.slow

UPLOADS = 50
#: How far above its idle level the process may stay once the last job expired (allocator slack, caches).
SLACK_MB = 60


def _rss_mb() -> float:
    """This process's resident memory now (Linux /proc; the server runs in it)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def test_fifty_uploads_in_a_row_return_memory_and_leave_no_files(tmp_path, model_folder, monkeypatch):
    small = write_synthetic_dataset(tmp_path / "cases", cases=4, shape=(32, 32, 24), seed=21)
    # and one case of uncompressed files over 1 MB each, which the server spools to disk while they arrive
    large = write_synthetic_dataset(tmp_path / "large", cases=1, shape=(96, 96, 64), seed=22)[0]
    for path in case_files(large, with_label=True):
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    assert min(p.stat().st_size for p in case_files(large)) > 2**20
    uploads = [large if index % 10 == 9 else small[index % len(small)] for index in range(UPLOADS)]
    spool = tmp_path / "spool"  # where uploads are spooled while they arrive
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    data = tmp_path / "data"
    with client(model=model_folder, backend="ort", data_dir=data) as app:
        queue = app.app.state.bratsx.queue
        for case in [*small, large]:  # warm up: the backend's first runs of each size allocate what it keeps
            wait_for_job(app, upload(app, case_files(case)).json()["id"])
        queue.expire(now=float("inf"))
        gc.collect()
        idle = _rss_mb()
        peak, started = idle, time.monotonic()
        states = []
        for case in uploads:
            job = wait_for_job(app, upload(app, case_files(case)).json()["id"])
            states.append(job["state"])
            peak = max(peak, _rss_mb())
        seconds = time.monotonic() - started
        queue.expire(now=float("inf"))
        gc.collect()
        after = _rss_mb()
        left = sorted(str(p.relative_to(tmp_path)) for p in [*data.rglob("*"), *spool.rglob("*")])
    print(f"\n{UPLOADS} uploads in {seconds:.1f} s ({seconds / UPLOADS:.2f} s each); memory idle {idle:.0f} MB, "
          f"peak {peak:.0f} MB, after {after:.0f} MB")
    assert states == ["done"] * UPLOADS
    assert after - idle < SLACK_MB, (idle, peak, after)
    assert left == []
