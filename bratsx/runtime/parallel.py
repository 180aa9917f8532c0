"""Many inference workers on one machine: one process per worker, cases handed out one at a time.

``bratsx infer --workers N`` splits the CPU cores between ``N`` processes; ``--devices cuda:0,cuda:1``
runs one process per GPU. :class:`Processes` is the scheduler :func:`~bratsx.runtime.batch.run_batch` hands
the cases to. Each worker opens the runner's spec once and runs the same pipeline as a single
process (:func:`~bratsx.runtime.infer.run_pipeline`: loading, segmenting and writing overlapped), asking
this process for its next case only when it can start loading it, so a slow case never stalls a
static slice. Workers write outputs and records themselves (atomically) and report events (tiles done,
records) over a pipe of their own, which feeds one progress display.

Nothing is lost when a worker dies (``kill -9``, the out-of-memory killer): every case it finished has
its output and record on disk; the cases it held get a ``failed`` record saying so, the surviving
workers take the rest, and a rerun redoes exactly the unfinished cases. Ctrl-C stops every worker:
each finishes writing what it already segmented (so no output is partial), then exits.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cases import Case
from ..errors import BratsxError, failure_text
from .batch import Work
from .infer import InferOptions, run_pipeline
from .runner import Runner, RunnerSpec

__all__ = ["Processes", "WorkerSlot", "worker_slots"]

logger = logging.getLogger(__name__)

#: Seconds the workers get to finish what they segmented after Ctrl-C, before they are killed.
STOP_GRACE_S = 60.0
_DEVICE = re.compile(r"cpu|cuda:(\d+)")


@dataclass(frozen=True)
class WorkerSlot:
    """One worker process.

    Attributes:
        label: what its records say about its device (``cpu``, ``cuda:1``).
        device: what it opens the models on (``cpu`` or ``cuda``).
        gpu: the GPU it alone sees (``CUDA_VISIBLE_DEVICES``), for CUDA workers.
        threads: its CPU threads (``None``: the backend's default).
    """

    label: str
    device: str
    gpu: str | None = None
    threads: int | None = None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_slots(workers: int = 1, devices: Sequence[str] | None = None, threads: int | None = None
                 ) -> list[WorkerSlot]:
    """The worker processes for ``--workers`` or ``--devices``.

    Args:
        workers: CPU worker processes (ignored when ``devices`` is given).
        devices: one worker per entry, each ``cpu`` or ``cuda:<index>``.
        threads: CPU threads to split between the CPU workers (``None``: every core of this process).

    Returns:
        One slot per worker; CPU workers share the threads evenly (at least one each).

    Raises:
        BratsxError: fewer than one worker, or a device that is neither ``cpu`` nor ``cuda:<index>``.
    """
    if devices:
        for device in devices:
            if not _DEVICE.fullmatch(device):
                raise BratsxError(f"--devices: {device!r} is not a device; give cpu or cuda:<index>, e.g. "
                                  "cuda:0,cuda:1")
        labels = list(devices)
    elif workers < 1:
        raise BratsxError(f"--workers {workers}: give 1 or more")
    else:
        labels = ["cpu"] * workers
    cpu_workers = labels.count("cpu")
    share = max(1, (threads or _cores()) // cpu_workers) if cpu_workers else None
    return [WorkerSlot("cpu", "cpu", None, share) if label == "cpu"
            else WorkerSlot(label, "cuda", label.split(":")[1], threads) for label in labels]


class _Stop(BaseException):
    """Raised in a worker by SIGTERM: a BaseException, so no per-case ``except Exception`` swallows it."""


def _stop(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough
    raise _Stop


class _Channel:
    """A worker's end of its pipe: events out from any thread, cases in on the loader thread."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, *message: Any) -> None:
        with self._lock:
            with contextlib.suppress(OSError):  # the parent is gone: nobody is left to tell
                self._conn.send(message)

    def cases(self) -> Iterator[tuple[Case, str | None]]:
        while True:
            self.send("next")
            try:
                reply = self._conn.recv()
            except (EOFError, OSError):
                return
            if reply[0] != "case":
                return
            yield reply[1], reply[2]


def _worker(slot: WorkerSlot, spec: RunnerSpec, out_dir: Path, options: InferOptions,
            identity: dict[str, Any], conn: multiprocessing.connection.Connection) -> None:
    """A worker process: open the runner, then segment cases until the parent has none left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the workers
    signal.signal(signal.SIGTERM, _stop)
    if slot.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu  # before anything initialises CUDA in this process
    channel = _Channel(conn)
    try:
        with spec.open(slot.device, slot.threads) as runner:
            own = {"model": {**identity["model"], "device": slot.label}, "settings": identity["settings"]}
            run_pipeline(channel.cases(), runner, out_dir, options, own,
                         on_record=lambda record: channel.send("record", record),
                         on_tiles=lambda case_id, done, total: channel.send("tiles", case_id, done, total))
    except _Stop:
        return
    except Exception as error:  # a worker that cannot run says why, and the parent decides
        channel.send("error", failure_text(error))


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class _Supervisor:
    """The parent's side: hands out cases, collects events, notices dead workers, stops them on Ctrl-C."""

    def __init__(self, todo: Sequence[tuple[Case, str | None]], work: Work) -> None:
        self.queue = deque(todo)
        self.work = work
        self.finished = 0
        self.held: dict[int, dict[str, Case]] = {}
        self.errors: dict[int, str] = {}
        self.unfinished: dict[str, str] = {}
        self.stopping = False
        self.processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self.conns: dict[int, multiprocessing.connection.Connection] = {}

    def start(self, slots: Sequence[WorkerSlot], spec: RunnerSpec) -> None:
        context = multiprocessing.get_context("spawn")  # no forked threads or CUDA state
        work = self.work
        for index, slot in enumerate(slots):
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(slot, spec, work.out_dir, work.options, work.identity,
                                                            child), name=f"bratsx-worker-{index}", daemon=True)
            process.start()
            child.close()  # so that the parent sees EOF once the worker is gone
            self.processes[index], self.conns[index], self.held[index] = process, parent, {}

    def handle(self, index: int, message: tuple) -> None:
        kind = message[0]
        if kind == "next":
            if self.queue and not self.stopping:
                case, note = self.queue.popleft()
                try:
                    self.conns[index].send(("case", case, note))
                except OSError:  # the worker died right after asking: the case goes to another
                    self.queue.appendleft((case, note))
                    return
                self.held[index][case.case_id] = case
            else:
                with contextlib.suppress(OSError):  # a worker already gone needs no answer
                    self.conns[index].send(("stop",))
        elif kind == "record":
            record = message[1]
            self.held[index].pop(record.case_id, None)
            self.finished += 1
            self.work.on_record(record)
        elif kind == "tiles" and self.work.on_tiles:
            self.work.on_tiles(*message[1:])
        elif kind == "error":
            self.errors[index] = message[1]

    def ended(self, index: int) -> None:
        """A worker's pipe closed: it exited. Account for every case it held."""
        process = self.processes[index]
        process.join(timeout=5)
        conn = self.conns.pop(index)
        conn.close()
        held = self.held.pop(index)
        if self.stopping or not held:
            return  # done, or stopped by Ctrl-C: unfinished cases simply have no record yet
        how = self.errors.get(index) or _how_it_ended(process.exitcode)
        logger.warning("worker %s (pid %s) stopped: %s", index, process.pid, how)
        for case_id in held:
            self.unfinished[case_id] = f"its worker (pid {process.pid}) stopped before finishing it ({how})"

    def step(self, timeout: float) -> None:
        for conn in multiprocessing.connection.wait(list(self.conns.values()), timeout):
            index = next(i for i, c in self.conns.items() if c is conn)
            try:
                message = conn.recv()
            except Exception:  # EOF, or a message cut short by a killed worker
                self.ended(index)
                continue
            self.handle(index, message)

    def stop(self, kill: bool = False) -> None:
        self.stopping = True
        for index, process in self.processes.items():
            if index in self.conns and process.is_alive():
                os.kill(process.pid, signal.SIGKILL if kill else signal.SIGTERM)


@dataclass(frozen=True)
class Processes:
    """One worker process per slot, each opening the runner's spec; cases handed out one at a time.

    Args:
        slots: the workers (see :func:`worker_slots`).
    """

    slots: Sequence[WorkerSlot]

    @property
    def description(self) -> str:
        return f"{len(self.slots)} worker processes"

    def run(self, todo: Sequence[tuple[Case, str | None]], runner: Runner, work: Work) -> dict[str, str]:
        """Run ``todo`` on the workers (see :class:`~bratsx.runtime.batch.Scheduler`).

        Raises:
            BratsxError: no worker could run (e.g. the model does not open), with the worker's reason.
            KeyboardInterrupt: Ctrl-C; every worker has stopped and nothing partial is left.
        """
        spec = runner.spec
        supervisor = _Supervisor(todo, work)
        deadline = None
        try:
            supervisor.start(list(self.slots)[:len(todo)], spec)  # no idle worker is started
            while supervisor.conns:
                try:
                    supervisor.step(timeout=0.5)
                    if deadline is not None and time.monotonic() > deadline:
                        supervisor.stop(kill=True)
                except KeyboardInterrupt:
                    supervisor.stop(kill=deadline is not None)  # a second Ctrl-C kills at once
                    deadline = time.monotonic() + STOP_GRACE_S
        finally:
            for process in supervisor.processes.values():
                if process.is_alive():
                    process.kill()
                process.join()
        if supervisor.stopping:
            raise KeyboardInterrupt
        errors = list(supervisor.errors.values())
        if not supervisor.finished and supervisor.queue and errors:
            raise BratsxError(f"no worker could run: {errors[0]}")
        for case, _ in supervisor.queue:  # every worker gone before these were handed out
            supervisor.unfinished[case.case_id] = f"not run ({errors[0] if errors else 'every worker stopped'})"
        return supervisor.unfinished
