"""Clusters through Ray Data: the same per-case work as a local run, spread over a Ray cluster.

The pipeline, as Ray Data's batch-inference guide lays it out::

    case list -> load + preprocess (CPU tasks) -> sliding window (actor pool: the models open once per
    actor; one actor per GPU, or CPU actors) -> write outputs + record (tasks) -> the driver

:class:`Ray` is the scheduler :func:`~bratsx.runtime.batch.run_batch` hands the cases to. Every stage calls
the functions the local schedulers call (:func:`~bratsx.runtime.infer.prepare_or_error`,
:func:`~bratsx.runtime.infer.segment_one`, :func:`~bratsx.runtime.infer.write_one`), so the outputs are
byte-identical to a local run. Batches hold one case (a 3D case is 100+ MB); Ray Data's streaming
executor holds back loading while the actors are busy, and each actor is sent at most two cases at a
time, so memory stays bounded whatever the number of cases. A case that fails is recorded as failed
and the others go on; a case whose task or actor died without a result is recorded as failed too, so
every case is accounted for and a rerun redoes exactly what is missing.

Inputs and the output folder must be reachable under the same paths from every node (shared storage);
so must the model files. ``ray`` comes with the ``[ray]`` extra and is imported only here, when used.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cases import Case
from ..errors import BratsxError, failure_text
from ..extras import optional_import
from .batch import Work
from .infer import InferOptions, prepare_or_error, segment_one, write_one
from .records import CaseRecord
from .runner import Runner, RunnerSpec
from .segment import PreparedCase

__all__ = ["Ray"]

logger = logging.getLogger(__name__)

#: Cases sent to one actor at a time: one running, one arriving meanwhile.
CASES_IN_FLIGHT_PER_ACTOR = 2


@dataclass(frozen=True, kw_only=True)
class Ray:
    """Ray Data actors: where and how wide to run.

    Attributes:
        address: as ``ray.init`` takes it, used only when this process has not started Ray itself:
            ``local`` starts a local instance (as does ``None`` unless ``RAY_ADDRESS`` names a cluster),
            ``auto`` joins the cluster running on this machine (``ray start --head``), ``ray://HOST:10001``
            a remote cluster through Ray Client.
        actors: inference actors (``None``: one per GPU on a cluster with GPUs, else one per node).
        threads: CPU threads of the whole run, split between the CPU actors (``None``: the cluster's CPUs),
            as ``--threads`` means for every scheduler.
    """

    address: str | None = None
    actors: int | None = None
    threads: int | None = None

    @property
    def description(self) -> str:
        return f"Ray ({self.address or 'local'})"

    def run(self, todo: Sequence[tuple[Case, str | None]], runner: Runner, work: Work) -> dict[str, str]:
        """Run ``todo`` on Ray (see :class:`~bratsx.runtime.batch.Scheduler`); cases whose task or actor died, or
        all of them when the pipeline stopped, come back with why.

        Raises:
            BratsxError: ``ray`` is not installed.
        """
        ray = optional_import("ray", "ray")
        spec = runner.spec
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        why = "its Ray task or actor failed without a result (see the Ray logs)"
        try:
            for row in _pipeline(ray, list(todo), runner, spec, work, self).iter_rows():
                work.on_record(CaseRecord.from_json(row["record"]))
        except Exception as error:  # the pipeline itself stopped (say, no actor could open the model)
            why = f"the Ray pipeline stopped ({_last_line(error)})"
            logger.warning("%s", why, exc_info=error)
        finally:
            if started_here:
                ray.shutdown()
        return {case.case_id: why for case, _ in todo}


def _slim(prepared: PreparedCase) -> PreparedCase:
    """The prepared case without the raw image, which segmenting does not read: half the bytes to ship."""
    return dataclasses.replace(prepared, loaded=dataclasses.replace(prepared.loaded, image=np.empty(0, np.float32)))


def _load(row: dict[str, Any], todo: list[tuple[Case, str | None]], runner: Runner) -> dict[str, Any]:
    """Load + preprocess task: a failure travels on as a one-line error, as it would locally."""
    case = todo[row["index"]][0]
    prepared = prepare_or_error(case, runner)
    if isinstance(prepared, Exception):
        prepared = BratsxError(failure_text(prepared, case.case_id))
    else:
        prepared = _slim(prepared)
    return {"index": row["index"], "prepared": prepared}


class _SegmentActor:
    """Inference actor: opens the runner once, then segments the cases it is sent, one per batch."""

    def __init__(self, spec: RunnerSpec, device: str, threads: int | None, todo: list[tuple[Case, str | None]],
                 options: InferOptions, identity: dict[str, Any]) -> None:
        self.runner = spec.open(device, threads)
        self.todo, self.options = todo, options
        self.identity = {"model": {**identity["model"], "device": device}, "settings": identity["settings"]}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = np.empty(len(batch["index"]), dtype=object)
        for i, (index, prepared) in enumerate(zip(batch["index"], batch["prepared"])):
            case, note = self.todo[int(index)]
            outputs[i] = segment_one(case, prepared, note, self.runner, self.options, self.identity)
        return {"index": batch["index"], "output": outputs}


def _last_line(error: Exception) -> str:
    """The line of a (Ray, multi-line) error that says what went wrong."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _write(row: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write task: outputs, then the record; the driver gets the record only."""
    return {"index": row["index"], "record": write_one(row["output"], out_dir).to_json()}


def _layout(ray: Any, options: Ray) -> tuple[int, str, int | None, float]:
    """How many actors, on which device, with how many threads, reserving how many CPUs each."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return options.actors or gpus, "cuda", options.threads, 1.0
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU")]
    actors = options.actors or max(1, len(nodes))
    threads = max(1, (options.threads or int(resources.get("CPU", 1))) // actors)
    smallest_node = min((int(n["Resources"]["CPU"]) for n in nodes), default=1)
    # Leave a CPU of each node to the load and write tasks, or they would wait for the actors to finish.
    return actors, "cpu", threads, float(max(1, min(threads, smallest_node) - 1))


def _pipeline(ray: Any, todo: list[tuple[Case, str | None]], runner: Runner, spec: RunnerSpec, work: Work,
              ray_options: Ray) -> Any:
    """The Ray Data dataset of the run: one row per case, ending in its record (as JSON).

    The load tasks get the runner closed (its contract and settings, no open model); the actors open its spec.
    """
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    actors, device, threads, cpus = _layout(ray, ray_options)
    dataset = ray.data.from_items([{"index": i} for i in range(len(todo))], override_num_blocks=len(todo))
    context = dataset.context
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.max_errored_blocks = -1  # a lost block is one case, accounted for by the driver; never the whole run
    return (
        dataset.map(_load, fn_kwargs={"todo": todo, "runner": Runner.for_workers(spec.models, runner.contract,
                                                                                  runner.options)}, num_cpus=0.5,
                    compute=TaskPoolStrategy(size=min(actors + 1, len(todo))))
        .map_batches(_SegmentActor, batch_size=1, batch_format="numpy",
                     fn_constructor_kwargs={"spec": spec, "device": device, "threads": threads, "todo": todo,
                                            "options": work.options, "identity": work.identity},
                     compute=ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=CASES_IN_FLIGHT_PER_ACTOR),
                     num_cpus=cpus, num_gpus=1 if device == "cuda" else 0)
        .map(_write, fn_kwargs={"out_dir": work.out_dir}, num_cpus=0.25)
    )
