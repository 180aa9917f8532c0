"""run_batch itself: parts, summaries, the runner's spec, and the policies it carries (schedulers, --window box)."""

import json
import pickle

import pytest
from standins import CONTRACT, SlowThreshold, StandIn

from bratsx.cases import discover_cases
from bratsx.errors import BratsxError
from bratsx.runtime.batch import Threads, run_batch
from bratsx.runtime.ensemble import Ensemble
from bratsx.runtime.parallel import Processes
from bratsx.runtime.parts import Part
from bratsx.runtime.ray_runner import Ray
from bratsx.runtime.runner import Runner, RunnerSpec
from bratsx.runtime.scheduling import choose_scheduler
from bratsx.runtime.segment import SegmentOptions, segment_case
from bratsx.synth import write_synthetic_dataset

FAST = SegmentOptions(overlap=0.0)


@pytest.fixture
def cases(tmp_path):
    write_synthetic_dataset(tmp_path / "cases", cases=3, shape=(32, 32, 24), seed=9)
    return discover_cases(tmp_path / "cases")


def test_a_part_runs_its_share_and_writes_its_summary_under_parts(cases, tmp_path):
    with RunnerSpec(StandIn(), FAST).open() as runner:
        result = run_batch(cases, runner, tmp_path / "out", part=Part(2, 1))
    assert [r.case_id for r in result.records] == [sorted(c.case_id for c in cases)[1]]
    assert result.summary == tmp_path / "out" / "parts" / "1-of-2" / "summary.json"
    summary = json.loads(result.summary.read_text())
    assert summary["by_status"] == {"ok": 1} and summary["settings"]["overlap"] == 0.0
    assert summary["model"] == {"backend": "toy", "device": "cpu"}
    with pytest.raises(BratsxError, match="--part-id 2"):
        Part(2, 2)


def test_the_runner_crosses_into_workers_as_its_spec(cases):
    with RunnerSpec(StandIn(), FAST).open() as runner:
        spec = pickle.loads(pickle.dumps(runner.spec))
        assert spec == runner.spec and spec.open().options == FAST
        segmented = segment_case(cases[0], runner)
    with pytest.raises(BratsxError, match="opened in this process only"):
        _ = Runner.from_backends([SlowThreshold()], CONTRACT).spec
    with pytest.raises(BratsxError, match="no model open in this process"):
        segment_case(cases[0], runner)  # closed
    assert segmented.labels.shape == segmented.loaded.geometry.canonical_shape


def test_box_window_is_refused_on_a_backend_that_runs_only_its_tile_shape():
    class TileOnly(SlowThreshold):
        name = "trt"
        runs_any_shape = False

    with pytest.raises(BratsxError, match="--window box: the trt backend runs only its tile shape"):
        Runner(Ensemble([TileOnly()], CONTRACT, {}), SegmentOptions(window="box"))
    assert Runner(Ensemble([TileOnly()], CONTRACT, {}), FAST).options is FAST  # tiles are fine


@pytest.mark.parametrize(("options", "expected"), [
    ({}, Threads), ({"workers": 2}, Processes), ({"devices": ["cpu"]}, Processes), ({"ray": "local"}, Ray)])
def test_one_place_turns_options_into_a_scheduler(options, expected):
    assert isinstance(choose_scheduler(**options), expected)


def test_threads_mean_the_whole_run_for_every_scheduler():
    from types import SimpleNamespace

    from bratsx.runtime.ray_runner import _layout

    assert [slot.threads for slot in choose_scheduler(workers=2, threads=4).slots] == [2, 2]
    cluster = SimpleNamespace(cluster_resources=lambda: {"CPU": 8},
                              nodes=lambda: [{"Alive": True, "Resources": {"CPU": 8}}])
    actors, device, threads, _ = _layout(cluster, choose_scheduler(ray="local", workers=2, threads=4))
    assert (actors, device, threads) == (2, "cpu", 2)  # the run's 4 threads split between 2 actors


def test_devices_with_ray_is_refused_in_one_line():
    with pytest.raises(BratsxError, match="--devices cannot be used with --ray"):
        choose_scheduler(ray="local", devices=["cuda:0"])
