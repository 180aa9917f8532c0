"""What libraries print on stdout (progress bars, hints, load failures), sent to the debug log instead.

nnU-Net, NNCF and ONNX Runtime's library preloading print to stdout, which would interleave with bratsx's
own tables and progress; ``bratsx --debug`` still shows it.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

__all__ = ["printed_to_debug_log"]


@contextlib.contextmanager
def printed_to_debug_log(logger: logging.Logger, source: str) -> Iterator[io.StringIO]:
    """Capture stdout inside the block and log it at debug level as ``source: ...`` when anything was printed.

    Yields the buffer, so the block can add to what gets logged (an error message, say).
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            yield captured
    finally:
        if captured.getvalue().strip():
            logger.debug("%s: %s", source, captured.getvalue().strip())
