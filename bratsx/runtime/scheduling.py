"""Which scheduler a run's options ask for: the one place ``--workers``, ``--devices``, ``--threads`` and
``--ray`` are turned into a :class:`~bratsx.runtime.batch.Scheduler`.

``--threads`` means the same thing for every scheduler: the CPU threads of the whole run, which the
caller opens its runner with (one process), split between the worker processes, or split between the
Ray actors.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import BratsxError
from .batch import Scheduler, Threads
from .parallel import Processes, worker_slots
from .ray_runner import Ray

__all__ = ["choose_scheduler"]


def choose_scheduler(*, workers: int = 1, devices: Sequence[str] | None = None, threads: int | None = None,
                     ray: str | None = None) -> Scheduler:
    """The scheduler for a run's options.

    Args:
        workers: worker processes sharing the CPU cores (with ``ray``: inference actors).
        devices: one worker process per device (``cpu``, ``cuda:<index>``).
        threads: CPU threads of the whole run (``None``: every core).
        ray: a Ray address (``local``, ``auto``, ``ray://HOST:10001``): run on Ray Data.

    Returns:
        :class:`~bratsx.runtime.ray_runner.Ray` with ``ray``; :class:`~bratsx.runtime.parallel.Processes` with
        ``devices`` or more than one worker; else :class:`~bratsx.runtime.batch.Threads`.

    Raises:
        BratsxError: ``devices`` with ``ray`` (Ray places its actors itself), or slots that are not workers
            (see :func:`~bratsx.runtime.parallel.worker_slots`).
    """
    if ray:
        if devices:
            raise BratsxError("--devices cannot be used with --ray: Ray gives each actor its own GPU; use --workers "
                              "for the number of actors, or drop --ray to run one process per device")
        return Ray(address=ray, actors=workers if workers > 1 else None, threads=threads)
    slots = worker_slots(workers, devices, threads)
    return Processes(slots) if devices or workers > 1 else Threads()
