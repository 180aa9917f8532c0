import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from standins import CONTRACT, StandIn, outputs, same_files, worker_pids

from bratsx.atomic import TEMPORARY_PREFIX
from bratsx.cases import discover_cases
from bratsx.errors import BratsxError
from bratsx.runtime.batch import run_batch
from bratsx.runtime.ensemble import ModelSpec
from bratsx.runtime.infer import output_path
from bratsx.runtime.parallel import Processes, WorkerSlot, worker_slots
from bratsx.runtime.records import read_records
from bratsx.runtime.runner import Runner, RunnerSpec
from bratsx.runtime.segment import SegmentOptions
from bratsx.synth import write_synthetic_dataset

FAST = SegmentOptions(overlap=0.0)


@pytest.fixture
def cases_dir(tmp_path):
    write_synthetic_dataset(tmp_path / "cases", cases=4, shape=(32, 32, 24), seed=5)
    return tmp_path / "cases"


def single_process(cases_dir: Path, out: Path, opener):
    with RunnerSpec(opener, FAST).open() as runner:
        return run_batch(discover_cases(cases_dir), runner, out).records


def in_workers(cases, opener, out: Path, workers: int = 2, on_case=None):
    """run_batch on ``workers`` processes, each opening ``opener`` (never opened in this process)."""
    runner = Runner.for_workers(opener, CONTRACT, FAST)
    return run_batch(cases, runner, out, scheduler=Processes(worker_slots(workers, threads=2)), on_case=on_case).records


@pytest.mark.parametrize(("workers", "devices", "threads", "expected"), [
    (2, None, 4, [WorkerSlot("cpu", "cpu", None, 2)] * 2),
    (3, None, 2, [WorkerSlot("cpu", "cpu", None, 1)] * 3),
    (1, ["cuda:0", "cuda:1"], None, [WorkerSlot("cuda:0", "cuda", "0"), WorkerSlot("cuda:1", "cuda", "1")]),
    (1, ["cpu", "cuda:2"], 6, [WorkerSlot("cpu", "cpu", None, 6), WorkerSlot("cuda:2", "cuda", "2", 6)]),
])
def test_worker_slots_split_the_cores_and_give_each_gpu_one_process(workers, devices, threads, expected):
    assert worker_slots(workers, devices, threads) == expected


@pytest.mark.parametrize(("workers", "devices", "message"), [
    (0, None, "--workers 0"), (1, ["cuda"], "'cuda' is not a device"), (1, ["gpu:0"], "cpu or cuda:<index>")])
def test_worker_slots_refuse_what_is_not_a_worker(workers, devices, message):
    with pytest.raises(BratsxError, match=message):
        worker_slots(workers, devices)


def test_two_workers_write_what_one_process_writes_and_a_rerun_reuses_it(tiny_onnx, cases_dir, tmp_path):
    spec = ModelSpec(paths=(tiny_onnx,), backend="ort")
    single = single_process(cases_dir, tmp_path / "single", spec)
    with RunnerSpec(spec, FAST).open() as runner:  # as bratsx infer does: opened here first, then in every worker
        runner.close()
        parallel = run_batch(discover_cases(cases_dir), runner, tmp_path / "parallel",
                             scheduler=Processes(worker_slots(2, threads=2))).records
    assert [r.status for r in parallel] == ["ok"] * 4
    assert len(same_files(tmp_path / "single", tmp_path / "parallel")) == 4
    assert [r.metrics for r in parallel] == [r.metrics for r in single]
    assert set(read_records(tmp_path / "parallel")) == {r.case_id for r in single}
    again = run_batch(discover_cases(cases_dir), runner, tmp_path / "parallel",
                      scheduler=Processes(worker_slots(2, threads=2))).records
    assert [r.note for r in again] == ["reused"] * 4 and [r.metrics for r in again] == [r.metrics for r in single]


def test_a_worker_that_cannot_open_the_model_is_reported(cases_dir, tmp_path):
    with pytest.raises(BratsxError, match="no worker could run: no such model"):
        in_workers(discover_cases(cases_dir), StandIn(fail="no such model"), tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.nii.gz"))


@pytest.mark.slow
def test_a_killed_worker_loses_no_finished_case_and_a_rerun_completes_the_rest(cases_dir, tmp_path):
    write_synthetic_dataset(cases_dir, cases=7, shape=(32, 32, 24), seed=6, overwrite=True)
    slow = StandIn(seconds_per_batch=0.05, pids=tmp_path / "pids")
    cases = discover_cases(cases_dir)
    finished_before_kill: list[str] = []

    def kill_one_worker(record):
        if not finished_before_kill:
            os.kill(worker_pids(tmp_path / "pids", 2)[0], signal.SIGKILL)
        finished_before_kill.append(record.case_id)

    first = in_workers(cases, slow, tmp_path / "out", on_case=kill_one_worker)
    by_id = {r.case_id: r for r in first}
    assert by_id[finished_before_kill[0]].status == "ok"
    assert set(read_records(tmp_path / "out")) == {c.case_id for c in cases}  # every case accounted for
    lost = [r for r in first if r.status == "failed"]
    assert lost and all("killed by SIGKILL" in r.error for r in lost)
    finished = sorted(output_path(tmp_path / "out", r.case_id).name for r in first if r.status == "ok")
    assert outputs(tmp_path / "out") == finished  # nothing partial under a final name

    rerun = in_workers(cases, StandIn(), tmp_path / "out")
    assert [r.status for r in rerun] == ["ok"] * len(cases)
    assert {r.case_id for r in rerun if r.note != "reused"} == {r.case_id for r in lost}
    assert [r.metrics for r in rerun if r.note == "reused"] == [r.metrics for r in first if r.status == "ok"]
    single_process(cases_dir, tmp_path / "single", StandIn())
    assert len(same_files(tmp_path / "single", tmp_path / "out")) == len(cases)


INTERRUPTED_RUN = textwrap.dedent("""
    import signal
    import sys
    from pathlib import Path
    from standins import StandIn
    from bratsx.cases import discover_cases
    from standins import CONTRACT
    from bratsx.runtime.batch import run_batch
    from bratsx.runtime.parallel import Processes, worker_slots
    from bratsx.runtime.runner import Runner
    from bratsx.runtime.segment import SegmentOptions

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even under a background pytest
    cases, out, pids = map(Path, sys.argv[1:])
    runner = Runner.for_workers(StandIn(seconds_per_batch=1.0, pids=pids), CONTRACT, SegmentOptions(overlap=0.0))
    run_batch(discover_cases(cases), runner, out, scheduler=Processes(worker_slots(2, threads=2)))
""")


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_and_leaves_no_partial_output(cases_dir, tmp_path):
    tests = Path(__file__).resolve().parents[1]
    run = subprocess.Popen([sys.executable, "-c", INTERRUPTED_RUN, str(cases_dir), str(tmp_path / "out"),
                            str(tmp_path / "pids")], env={**os.environ, "PYTHONPATH": str(tests)},
                           stderr=subprocess.PIPE, text=True)
    workers = worker_pids(tmp_path / "pids", 2)
    time.sleep(1.0)  # both workers are inside their first case (1 s per batch of tiles)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode != 0 and "KeyboardInterrupt" in stderr
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} still running"
    out = tmp_path / "out"
    assert not [p for p in out.iterdir() if p.name.startswith(TEMPORARY_PREFIX)]
    records = read_records(out)
    assert len(records) < 4  # it was stopped midway
    written = {p.name.removesuffix(".nii.gz") for p in out.glob("*.nii.gz")}
    assert written == {case_id for case_id, r in records.items() if r.status == "ok"}


def test_openvino_with_a_thread_budget_leaves_pinning_to_the_os(tiny_onnx):
    """Workers get a share of the cores each; pinned, every 1-thread worker would run on the same first core."""
    pytest.importorskip("openvino")
    from bratsx.runtime.backends import OpenVinoBackend

    compiled = OpenVinoBackend(tiny_onnx, threads=1).compiled
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert compiled.get_property("ENABLE_CPU_PINNING") is False
