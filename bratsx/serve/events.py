"""A job's progress pushed to the page as server-sent events (``text/event-stream``), not polled.

The stream sends the job as the page sees it (``event: job``) each time its state, stage, tiles or
place in line change, at most every ``interval_s``, and ends once the job is done or failed (or with
``event: expired`` when its files were deleted). A comment line keeps idle connections open.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

__all__ = ["EVENT_STREAM", "job_events", "server_event"]

EVENT_STREAM = "text/event-stream"
#: What a change is: these fields of the job differ (its running seconds alone change nothing).
_CHANGES = ("state", "stage", "tiles_done", "tiles_total", "position", "error")
_FINAL = ("done", "failed")


def server_event(name: str, data: dict[str, Any]) -> str:
    """One event in the ``text/event-stream`` format (JSON data on one line)."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def job_events(read: Callable[[], dict[str, Any] | None], disconnected: Callable[[], Awaitable[bool]],
                     interval_s: float = 0.1, keep_alive_s: float = 15.0) -> AsyncIterator[str]:
    """The events of one job until it ends, the client leaves or the job expires.

    Args:
        read: the job as the page sees it, or ``None`` once it expired.
        disconnected: whether the client has gone (the stream then stops).
        interval_s: how often the job is read.
        keep_alive_s: longest silence before a comment line.

    Yields:
        Events in the ``text/event-stream`` format.
    """
    last: tuple[Any, ...] | None = None
    silent = 0.0
    while not await disconnected():
        job = read()
        if job is None:
            yield server_event("expired", {"detail": "the job expired and its files were deleted"})
            return
        changes = tuple(job.get(key) for key in _CHANGES)
        if changes != last:
            yield server_event("job", job)
            last, silent = changes, 0.0
            if job["state"] in _FINAL:
                return
        elif silent >= keep_alive_s:
            yield ": keep-alive\n\n"
            silent = 0.0
        await asyncio.sleep(interval_s)
        silent += interval_s
