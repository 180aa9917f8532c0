from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from standins import same_files

from bratsx.cases import discover_cases
from bratsx.runtime.batch import run_batch
from bratsx.runtime.ensemble import ModelSpec
from bratsx.runtime.ray_runner import Ray
from bratsx.runtime.records import read_records
from bratsx.runtime.runner import Runner, RunnerSpec
from bratsx.runtime.segment import SegmentOptions
from bratsx.synth import write_synthetic_dataset

FAST = SegmentOptions(overlap=0.0)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs, started and stopped by this module."""
    tests = str(Path(__file__).resolve().parents[1])
    for attempt in range(3):  # on a loaded machine the raylet may miss Ray's fixed 30 s start-up deadline
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20,
                     runtime_env={"env_vars": {"PYTHONPATH": tests}})
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_writes_what_one_process_writes_records_every_case_and_resumes(local_ray, tiny_onnx, tmp_path):
    write_synthetic_dataset(tmp_path / "cases", cases=3, shape=(32, 32, 24), seed=7)
    broken = sorted((tmp_path / "cases").iterdir())[1]
    next(broken.glob("*_t2.nii.gz")).write_bytes(b"\x1f\x8b broken")
    cases = discover_cases(tmp_path / "cases")
    with RunnerSpec(ModelSpec(paths=(tiny_onnx,), backend="ort"), FAST).open() as runner:
        local = run_batch(cases, runner, tmp_path / "local").records
    seen = []
    distributed = run_batch(cases, runner, tmp_path / "ray", scheduler=Ray(actors=1), on_case=seen.append).records
    assert [r.status for r in distributed] == [r.status for r in local] == ["ok", "failed", "ok"]
    assert distributed[1].error == local[1].error  # a bad case is recorded, never failing the run
    assert len(same_files(tmp_path / "local", tmp_path / "ray")) == 2
    assert [r.metrics for r in distributed] == [r.metrics for r in local]
    assert set(read_records(tmp_path / "ray")) == {c.case_id for c in cases} == {r.case_id for r in seen}
    again = run_batch(cases, runner, tmp_path / "ray", scheduler=Ray(actors=1)).records
    assert [r.note for r in again] == ["reused", None, "reused"]  # only the failed case is redone
    assert [r.metrics for r in again] == [r.metrics for r in local]


@pytest.mark.slow
def test_actors_that_cannot_open_the_model_leave_every_case_recorded_as_failed(local_ray, tmp_path):
    from standins import CONTRACT, StandIn

    write_synthetic_dataset(tmp_path / "cases", cases=2, shape=(32, 32, 24), seed=7)
    cases = discover_cases(tmp_path / "cases")
    runner = Runner.for_workers(StandIn(fail="no such model"), CONTRACT, FAST)
    records = run_batch(cases, runner, tmp_path / "out", scheduler=Ray(actors=1)).records
    assert [r.status for r in records] == ["failed", "failed"]
    assert all("the Ray pipeline stopped" in r.error and "no such model" in r.error for r in records)
    assert set(read_records(tmp_path / "out")) == {c.case_id for c in cases}


@pytest.mark.slow
def test_infer_ray_from_the_command_line_writes_what_one_process_writes(local_ray, tiny_onnx, tmp_path):
    from typer.testing import CliRunner

    from bratsx.cli import app

    write_synthetic_dataset(tmp_path / "cases", cases=2, shape=(32, 32, 24), seed=3)
    for out, extra in (("single", []), ("ray", ["--ray", "local"])):
        result = CliRunner().invoke(app, ["infer", str(tmp_path / "cases"), "-m", str(tiny_onnx), "--backend", "ort",
                                          "-o", str(tmp_path / out), "--overlap", "0", *extra])
        assert result.exit_code == 0, result.output
    assert "Ray (local)" in result.output
    assert len(same_files(tmp_path / "single", tmp_path / "ray")) == 2
